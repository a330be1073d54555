"""The training benchmark (`tru bench train`): per seed, one training run on the default split
in a child process (seconds per epoch, epochs, peak RSS, Recall/NDCG@20 against popularity),
one epoch at Amazon-Baby synthetic scale, and the validation curves' plot."""

from __future__ import annotations

import multiprocessing as mp
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from tru import paths
from tru.bench.process import host_gemm_gflops, in_child, peak_rss_mb
from tru.config import Params
from tru.data.dataset import load_split
from tru.data.mmrec import load_folder
from tru.data.split import make_split
from tru.data.synth import SCALES, synthesize
from tru.errors import DataError
from tru.io import read_json, write_json
from tru.metrics import popularity_scores, ranked_metrics_batched
from tru.models import backbone_for
from tru.train import EvalSet, evaluate, fit, seed_everything


def _train_seed(params_json: str, split_dir: str, seed: int) -> dict:
    """One training run with `seed` on the split in `split_dir`: its timings, sizes and metrics."""
    params = Params.model_validate_json(params_json)
    data = load_split(split_dir)
    seed_everything(seed, params.train.threads)
    model = backbone_for(params.model, data)
    res = fit(
        model, data.train, EvalSet.build(data.valid, data.train, data.n_users), params.train, seed, progress=False
    )
    test = evaluate(res.model, EvalSet.build(data.test, data.train, data.n_users), ks=(20,))
    secs = [h["seconds"] for h in res.history]
    return {
        "seed": seed,
        "median_epoch_seconds": statistics.median(secs),
        "epochs_run": len(res.history),
        "epochs_to_best": res.best_epoch,
        "train_seconds": res.seconds,
        "peak_rss_mb": peak_rss_mb(),
        "valid_recall@20": res.best_valid["recall@20"],
        "valid_ndcg@20": res.best_valid["ndcg@20"],
        "test_recall@20": test["recall@20"],
        "test_ndcg@20": test["ndcg@20"],
        "curve": [[h["epoch"], h.get("valid_recall@20")] for h in res.history],
    }


def popularity(split_dir: str | Path) -> dict:
    """The popularity ranking (training counts) of the split in `split_dir`, evaluated like the
    model: valid and test Recall@20 and NDCG@20."""
    data = load_split(split_dir)
    score = popularity_scores(data.train, data.n_items)
    out = {}
    for split in ("valid", "test"):
        es = EvalSet.build(data.pairs(split), data.train, data.n_users)
        m = ranked_metrics_batched(score, es.users, es.positives, es.exclude, ks=(20,))
        out[f"{split}_recall@20"], out[f"{split}_ndcg@20"] = m["recall@20"], m["ndcg@20"]
    return out


def _baby_epoch(params_json: str) -> dict:
    """One training epoch at Amazon-Baby synthetic scale (a dataset generated and split in a
    temporary folder): its sizes, the seconds of each step and the peak RSS."""
    params = Params.model_validate_json(params_json)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ds = Path(tmp) / "baby"
        synthesize(SCALES["baby"], params.seed, ds, "baby")
        synth_s = time.perf_counter() - t0
        make_split(load_folder(ds), params.split, params.seed, Path(tmp) / "split", ds)
        data = load_split(Path(tmp) / "split")
        seed_everything(params.seed, params.train.threads)
        model = backbone_for(params.model, data)
        t1 = time.perf_counter()
        model.set_graph(data.train)
        graph_s = time.perf_counter() - t1
        res = fit(
            model, data.train, None, params.train.model_copy(update={"max_epochs": 1}), params.seed, progress=False
        )
        return {
            "users": data.n_users,
            "items": data.n_items,
            "train_interactions": int(len(data.train)),
            "modalities": {m: int(f.shape[1]) for m, f in data.features.items()},
            "synthesize_seconds": synth_s,
            "graph_build_seconds": graph_s,
            "epoch_seconds": res.history[0]["seconds"],
            "peak_rss_mb": peak_rss_mb(),
        }


def _plot_curves(runs: dict[str, list[dict]], pop: dict, path: Path) -> None:
    """Validation Recall@20 per epoch, one line per backbone and seed (runs that recorded a curve)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"mgcn": "MGCN", "miggt": "MIG-GT"}
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    for (backbone, rs), colour in zip(runs.items(), ("tab:blue", "tab:orange", "tab:green")):
        for j, r in enumerate(r for r in rs if r.get("curve")):
            xs = [e for e, v in r["curve"] if v is not None]
            ys = [v for e, v in r["curve"] if v is not None]
            ax.plot(
                xs,
                ys,
                color=colour,
                alpha=1.0 - 0.25 * j,
                label=f"{names.get(backbone, backbone)} seed {r['seed']} (best epoch {r['epochs_to_best']})",
            )
    ax.axhline(pop["valid_recall@20"], color="grey", linestyle="--", label="popularity")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation Recall@20")
    ax.set_title("ML-100k: validation Recall@20 per epoch")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def bench_train(
    params: Params, out: str | Path, seeds: list[int], baby_epoch: bool = True, split_dir: str | Path = paths.SPLIT
) -> dict:
    """Train `params`' backbone once per seed on the split in `split_dir`, each in a child
    process, and (with `baby_epoch`) time one epoch at Amazon-Baby synthetic scale. Returns the
    backbone's result (summary, runs, environment); `out` (JSON) keeps one entry per backbone,
    and the plot of every backbone's curves goes beside it (.png)."""
    out = Path(out)
    if not (Path(split_dir) / "split.json").is_file():
        raise DataError(f"{split_dir}: no split yet; run `make run` (or `dvc repro split`) first")
    pj = params.model_dump_json()
    runs = []
    for seed in seeds:
        r = in_child(_train_seed, pj, str(split_dir), seed)
        print(
            f"seed {seed}: test Recall@20 {r['test_recall@20']:.4f}, {r['median_epoch_seconds']:.2f} s/epoch, "
            f"best epoch {r['epochs_to_best']}, peak RSS {r['peak_rss_mb']:.0f} MB",
            flush=True,
        )
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
    result: dict[str, Any] = {
        "summary": summary,
        "runs": runs,  # with each run's validation curve (the plot redraws every backbone's)
        "environment": {
            "torch": torch.__version__,
            "threads": params.train.threads,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": mp.cpu_count(),
            "host_gemm_gflops": host_gemm_gflops(params.train.threads),
        },
    }
    if baby_epoch:
        result["baby_scale_epoch"] = in_child(_baby_epoch, pj)
        print(
            f"baby scale: one epoch {result['baby_scale_epoch']['epoch_seconds']:.1f} s, "
            f"peak RSS {result['baby_scale_epoch']['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    # one file, one entry per backbone: benchmarking one keeps the others' figures
    merged = {}
    if out.is_file():
        merged = read_json(out)
        if "summary" in merged:  # the single-backbone layout of earlier versions
            merged = {merged["summary"]["backbone"]: merged}
    merged[params.model.backbone] = result
    write_json(out, dict(sorted(merged.items())))
    _plot_curves({b: r["runs"] for b, r in sorted(merged.items())}, pop, out.with_suffix(".png"))
    return result
