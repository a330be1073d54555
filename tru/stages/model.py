"""The base-model stages: train the backbone, evaluate it."""

from __future__ import annotations

from pathlib import Path

from tru import paths
from tru.checkpoint import load_checkpoint, save_checkpoint
from tru.config import Params
from tru.data.dataset import load_split
from tru.io import sha256_file, sha256_tree, write_json
from tru.models import backbone_for
from tru.train import EvalSet, Resume, evaluate, fit, seed_everything


def train_stage(
    params: Params,
    split_dir: str | Path = paths.SPLIT,
    out_dir: str | Path = paths.BASE_MODEL,
    log_path: str | Path = paths.TRAIN_LOG,
    progress: bool = True,
) -> dict:
    """Train the backbone on `split_dir` with early stopping on validation Recall@20; write the
    checkpoint to `out_dir` and the per-epoch log to `log_path`. Returns the checkpoint's path
    and weights hash, best epoch and validation metrics, seconds and the epoch resumed from."""
    data = load_split(split_dir)
    seed_everything(params.seed, params.train.threads)
    model = backbone_for(params.model, data)
    valid = EvalSet.build(data.valid, data.train, data.n_users)
    # a killed run continues from its last snapshot, next to the output (the same result)
    resume = resume_folder(out_dir)
    result = fit(model, data.train, valid, params.train, params.seed, progress=progress, desc="train", resume=resume)
    digest = save_checkpoint(
        out_dir,
        result.model,
        {
            "seed": params.seed,
            "train": params.train.recipe(),
            "best_epoch": result.best_epoch,
            "best_valid": result.best_valid,
            "data": {"split_sha256": sha256_tree(split_dir), "dataset": data.name},
        },
    )
    seconds = [h["seconds"] for h in result.history]
    write_json(
        log_path,
        {
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "total_seconds": result.seconds,
            "resumed_from_epoch": result.resumed_from,
            "history": result.history,
            "median_epoch_seconds": sorted(seconds)[len(seconds) // 2] if seconds else 0.0,
        },
    )
    Resume(resume).clear()
    return {
        "checkpoint": str(out_dir),
        "weights_sha256": digest,
        "best_epoch": result.best_epoch,
        "best_valid": result.best_valid,
        "seconds": result.seconds,
        "resumed_from": result.resumed_from,
    }


def resume_folder(out_dir: str | Path) -> Path:
    """Where training for `out_dir` (base training; an erasure by an exact method, its retrain)
    keeps its resume snapshots: `<out_dir>.resume/`."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".resume")


def evaluate_stage(
    params: Params,
    checkpoint: str | Path = paths.BASE_MODEL,
    split_dir: str | Path = paths.SPLIT,
    out_path: str | Path = paths.BASE_METRICS,
) -> dict:
    """Full-ranking Recall/NDCG@K of `checkpoint` on the valid and test splits of `split_dir`,
    written to `out_path`; returns the path, its hash and the values."""
    seed_everything(params.seed, params.train.threads)
    data = load_split(split_dir)
    model, _ = load_checkpoint(checkpoint, data.features)
    model.set_graph(data.train)
    out = {}
    for split in ("valid", "test"):
        metrics = evaluate(
            model,
            EvalSet.build(data.pairs(split), data.train, data.n_users),
            ks=params.evaluate.ks,
            batch_users=params.train.eval_batch_users,
        )
        out[split] = {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}
    write_json(out_path, out)
    return {"metrics": str(out_path), "sha256": sha256_file(out_path), "values": out}
