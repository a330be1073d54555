"""Benchmarks: speed, memory and quality figures written under reports/bench/.

Each measured run happens in a fresh child process so that its peak RSS is its own.
Nothing here is a test: figures are recorded, not asserted.
"""

from __future__ import annotations

import multiprocessing as mp
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tru.config import Params
from tru.io import write_json


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _in_child(fn, *args):
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(fn, args)


def _train_seed(params_json: str, split_dir: str, seed: int) -> dict:
    from tru.config import Params
    from tru.data.dataset import load_split
    from tru.models import build_backbone
    from tru.train import EvalSet, evaluate, fit, seed_everything

    params = Params.model_validate_json(params_json)
    data = load_split(split_dir)
    seed_everything(seed, params.train.threads)
    model = build_backbone(params.model.backbone, getattr(params.model, params.model.backbone).model_dump(),
                           data.n_users, data.n_items, data.features)
    res = fit(model, data.train, EvalSet.build(data.valid, data.train, data.n_users), params.train, seed, progress=False)
    test = evaluate(res.model, EvalSet.build(data.test, data.train, data.n_users), ks=(20,))
    secs = [h["seconds"] for h in res.history]
    return {
        "seed": seed,
        "median_epoch_seconds": statistics.median(secs),
        "epochs_run": len(res.history),
        "epochs_to_best": res.best_epoch,
        "train_seconds": res.seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "valid_recall@20": res.best_valid["recall@20"],
        "valid_ndcg@20": res.best_valid["ndcg@20"],
        "test_recall@20": test["recall@20"],
        "test_ndcg@20": test["ndcg@20"],
        "curve": [[h["epoch"], h.get("valid_recall@20")] for h in res.history],
    }


def popularity(split_dir: str | Path) -> dict:
    """The popularity ranking (training counts), evaluated like the model."""
    from tru.data.dataset import load_split
    from tru.metrics import ranked_metrics_batched
    from tru.train import EvalSet

    data = load_split(split_dir)
    counts = torch.as_tensor(np.bincount(data.train[:, 1], minlength=data.n_items), dtype=torch.float32)
    out = {}
    for split in ("valid", "test"):
        es = EvalSet.build(data.pairs(split), data.train, data.n_users)
        m = ranked_metrics_batched(lambda u: counts.expand(len(u), -1), es.users, es.positives, es.exclude, ks=(20,))
        out[f"{split}_recall@20"], out[f"{split}_ndcg@20"] = m["recall@20"], m["ndcg@20"]
    return out


def _baby_epoch(params_json: str) -> dict:
    from tru.config import Params
    from tru.data.dataset import load_split
    from tru.data.mmrec import load_folder
    from tru.data.split import make_split
    from tru.data.synth import SCALES, synthesize
    from tru.models import build_backbone
    from tru.train import fit, seed_everything

    params = Params.model_validate_json(params_json)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ds = Path(tmp) / "baby"
        synthesize(SCALES["baby"], params.seed, ds, "baby")
        synth_s = time.perf_counter() - t0
        make_split(load_folder(ds), params.split, params.seed, Path(tmp) / "split", ds)
        data = load_split(Path(tmp) / "split")
        seed_everything(params.seed, params.train.threads)
        model = build_backbone(params.model.backbone, getattr(params.model, params.model.backbone).model_dump(),
                               data.n_users, data.n_items, data.features)
        t1 = time.perf_counter()
        model.set_graph(data.train)
        graph_s = time.perf_counter() - t1
        res = fit(model, data.train, None, params.train.model_copy(update={"max_epochs": 1}), params.seed, progress=False)
        return {
            "users": data.n_users, "items": data.n_items, "train_interactions": int(len(data.train)),
            "modalities": {m: int(f.shape[1]) for m, f in data.features.items()},
            "synthesize_seconds": synth_s, "graph_build_seconds": graph_s,
            "epoch_seconds": res.history[0]["seconds"], "peak_rss_mb": _peak_rss_mb(),
        }


def _plot_curves(runs: list[dict], pop: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    for r in runs:
        xs = [e for e, v in r["curve"] if v is not None]
        ys = [v for e, v in r["curve"] if v is not None]
        ax.plot(xs, ys, label=f"MGCN seed {r['seed']} (best epoch {r['epochs_to_best']})")
    ax.axhline(pop["valid_recall@20"], color="grey", linestyle="--", label="popularity")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation Recall@20")
    ax.set_title("MGCN on ML-100k: validation Recall@20 per epoch")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def bench_train(params: Params, out: str | Path, seeds: list[int], baby_epoch: bool = True,
                split_dir: str | Path = "data/split") -> dict:
    out = Path(out)
    if not (Path(split_dir) / "split.json").is_file():
        from tru.errors import DataError

        raise DataError(f"{split_dir}: no split yet; run `make run` (or `dvc repro split`) first")
    pj = params.model_dump_json()
    runs = []
    for seed in seeds:
        r = _in_child(_train_seed, pj, str(split_dir), seed)
        print(f"seed {seed}: test Recall@20 {r['test_recall@20']:.4f}, {r['median_epoch_seconds']:.2f} s/epoch, "
              f"best epoch {r['epochs_to_best']}, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
        runs.append(r)
    pop = popularity(split_dir)

    def stat(key):
        vals = [r[key] for r in runs]
        return {"mean": statistics.fmean(vals), "min": min(vals), "max": max(vals)}

    summary = {
        "dataset": params.data.name,
        "backbone": params.model.backbone,
        "seeds": seeds,
        "median_epoch_seconds": stat("median_epoch_seconds"),
        "epochs_to_best": stat("epochs_to_best"),
        "train_seconds": stat("train_seconds"),
        "peak_rss_mb": stat("peak_rss_mb"),
        "valid_recall@20": stat("valid_recall@20"),
        "valid_ndcg@20": stat("valid_ndcg@20"),
        "test_recall@20": stat("test_recall@20"),
        "test_ndcg@20": stat("test_ndcg@20"),
        "popularity": pop,
    }
    result = {
        "summary": summary,
        "runs": [{k: v for k, v in r.items() if k != "curve"} for r in runs],
        "environment": {"torch": torch.__version__, "threads": params.train.threads, "python": platform.python_version(),
                        "machine": platform.machine(), "cpus": mp.cpu_count()},
    }
    if baby_epoch:
        result["baby_scale_epoch"] = _in_child(_baby_epoch, pj)
        print(f"baby scale: one epoch {result['baby_scale_epoch']['epoch_seconds']:.1f} s, "
              f"peak RSS {result['baby_scale_epoch']['peak_rss_mb']:.0f} MB", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    _plot_curves(runs, pop, out.with_suffix(".png"))
    return result
