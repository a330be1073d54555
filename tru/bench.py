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

from tru.config import Params, unlearn_for
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
    from tru.metrics import popularity_scores, ranked_metrics_batched
    from tru.train import EvalSet

    data = load_split(split_dir)
    score = popularity_scores(data.train, data.n_items)
    out = {}
    for split in ("valid", "test"):
        es = EvalSet.build(data.pairs(split), data.train, data.n_users)
        m = ranked_metrics_batched(score, es.users, es.positives, es.exclude, ks=(20,))
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
            ax.plot(xs, ys, color=colour, alpha=1.0 - 0.25 * j,
                    label=f"{names.get(backbone, backbone)} seed {r['seed']} (best epoch {r['epochs_to_best']})")
    ax.axhline(pop["valid_recall@20"], color="grey", linestyle="--", label="popularity")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation Recall@20")
    ax.set_title("ML-100k: validation Recall@20 per epoch")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def host_gemm_gflops(threads: int, size: int = 1024, seconds: float = 2.0) -> float:
    """The host's float32 matrix-multiply speed with the training's thread count: seconds per
    epoch measured on two hosts of the same kind differ with it (cloud CPUs of one kind have
    differed by 2x here), so the benchmark records it beside them."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return round(2 * size**3 * n / (time.perf_counter() - t0) / 1e9, 1)


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
        "runs": runs,  # with each run's validation curve (the plot redraws every backbone's)
        "environment": {"torch": torch.__version__, "threads": params.train.threads, "python": platform.python_version(),
                        "machine": platform.machine(), "cpus": mp.cpu_count(),
                        "host_gemm_gflops": host_gemm_gflops(params.train.threads)},
    }
    if baby_epoch:
        result["baby_scale_epoch"] = _in_child(_baby_epoch, pj)
        print(f"baby scale: one epoch {result['baby_scale_epoch']['epoch_seconds']:.1f} s, "
              f"peak RSS {result['baby_scale_epoch']['peak_rss_mb']:.0f} MB", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    # one file, one entry per backbone: benchmarking one keeps the others' figures
    merged = {}
    if out.is_file():
        from tru.io import read_json

        merged = read_json(out)
        if "summary" in merged:  # the single-backbone layout of earlier versions
            merged = {merged["summary"]["backbone"]: merged}
    merged[params.model.backbone] = result
    write_json(out, dict(sorted(merged.items())))
    _plot_curves({b: r["runs"] for b, r in sorted(merged.items())}, pop, out.with_suffix(".png"))
    return result


def _ingest_rows(rows: int, workdir: str) -> dict:
    """Generate `rows` requests against an Amazon-Baby-sized catalog (95% valid) and ingest them."""
    import json as _json
    from datetime import datetime, timezone

    from tru.requests.ingest import Catalog, ingest_batch

    root = Path(workdir)
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    rng = np.random.default_rng(0)
    n_users, n_items, n_pairs = 19_445, 7_050, 160_792
    users = [f"A{i:08d}" for i in range(n_users)]
    items = [f"B{i:09d}" for i in range(n_items)]
    pairs = np.unique(np.stack([rng.integers(0, n_users, 2 * n_pairs), rng.integers(0, n_items, 2 * n_pairs)], 1), axis=0)[:n_pairs]
    kinds = rng.choice(4, rows, p=[0.25, 0.10, 0.60, 0.05])
    pick = rng.integers(0, len(pairs), rows)
    with open(inbox / "big.jsonl", "w") as f:
        for r in range(rows):
            u, i = pairs[pick[r]]
            k = kinds[r]
            if k == 0:
                row = {"request_id": f"req-{r:09d}", "kind": "user", "user_id": users[u], "received_at": "2026-11-28T10:00:00Z"}
            elif k == 1:
                row = {"request_id": f"req-{r:09d}", "kind": "item", "item_id": items[i], "received_at": "2026-11-28T10:00:00+01:00"}
            elif k == 2:
                row = {"request_id": f"req-{r:09d}", "kind": "interaction", "user_id": users[u], "item_id": items[i],
                       "received_at": "2026-11-28"}
            else:  # bad rows: path-like id, unknown kind, wrong type, bad time
                row = {"request_id": f"../req-{r}", "kind": "account", "user_id": 12, "received_at": "later"}
            f.write(_json.dumps(row) + "\n")
    size_mb = (inbox / "big.jsonl").stat().st_size / 1e6
    catalog = Catalog(users, items, pairs)
    before = _peak_rss_mb()
    t0 = time.perf_counter()
    summary = ingest_batch(inbox, root / "batches", root / "ledger", catalog, b"k" * 32,
                           now=datetime(2026, 11, 28, 23, tzinfo=timezone.utc))
    return {"rows": summary["rows"], "by_status": summary["by_status"], "input_mb": round(size_mb, 1),
            "ingest_seconds": round(time.perf_counter() - t0, 1), "peak_rss_mb_before_ingest": round(before),
            "peak_rss_mb": round(_peak_rss_mb()), "ledger_mb": round(Path(summary["ledger"]).stat().st_size / 1e6, 1)}


def bench_ingest(out: str | Path, rows: int = 1_000_000) -> dict:
    """Ingest a generated file of `rows` requests in a child process: wall time, peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        result = _in_child(_ingest_rows, rows, tmp)
    result["environment"] = {"python": platform.python_version(), "cpus": mp.cpu_count()}
    write_json(out, result)
    return result


# ------------------------------------------------------------------- unlearning benchmark

REGIMES = {"user": 0.05, "item": 0.02, "interaction": 0.05}
VARIANTS = {
    # name: (method, unlearn overrides, tru switch overrides)
    "retrain": ("retrain", {}, {}),
    "reverse_repair": ("reverse_repair", {}, {}),
    "gradient_ascent": ("gradient_ascent", {}, {}),
    "multidelete": ("multidelete", {}, {}),
    "scalegun": ("scalegun", {}, {}),
    "ultrare": ("ultrare", {}, {}),
    "tru": ("tru", {}, {}),
    "tru_no_gate": ("tru", {}, {"gate": False}),
    "tru_no_scaling": ("tru", {}, {"scaling": False}),
    "tru_no_selection": ("tru", {}, {"selection": False}),
    "tru_no_exact": ("tru", {"exact_erasure": False}, {}),
    "reverse_repair_no_exact": ("reverse_repair", {"exact_erasure": False}, {}),
}


def regime_context(params: Params, regime: str, seed: int, split_dir: str | Path = "data/split",
                   checkpoint: str | Path = "data/models/base", delete_canary: bool = False):
    """A deletion of the given regime drawn with `seed` from the default dataset, in memory.
    The backdoor canary's fake users (when the split has them) are never drawn; with
    `delete_canary` they are deleted too (user regime)."""
    from dataclasses import replace

    from tru.checkpoint import load_checkpoint
    from tru.data.dataset import load_split
    from tru.unlearning.methods import UnlearnContext

    prior = load_split(split_dir)
    base, _ = load_checkpoint(checkpoint, prior.features)
    base.set_graph(prior.train)
    rng = np.random.default_rng(seed)
    share = REGIMES[regime]
    users = items = np.zeros(0, np.int64)
    from tru.audit.canary import load as load_canary

    fake = np.asarray((load_canary(split_dir) or {}).get("fake_users", []), np.int64)
    if regime == "user":
        active = np.setdiff1d(np.unique(prior.train[:, 0]), fake)
        users = np.sort(rng.choice(active, size=max(1, round(share * len(active))), replace=False))
        if delete_canary:
            users = np.union1d(users, fake)
        hit = lambda p: np.isin(p[:, 0], users)
    elif regime == "item":
        active = np.unique(prior.train[:, 1])
        items = np.sort(rng.choice(active, size=max(1, round(share * len(active))), replace=False))
        hit = lambda p: np.isin(p[:, 1], items)
    else:
        real = np.flatnonzero(~np.isin(prior.train[:, 0], fake))
        chosen = np.zeros(len(prior.train), bool)
        chosen[rng.choice(real, size=max(1, round(share * len(real))), replace=False)] = True
        keys = prior.train[chosen, 0] * prior.n_items + prior.train[chosen, 1]
        hit = lambda p: np.isin(p[:, 0] * prior.n_items + p[:, 1], keys)
    forget = prior.train[hit(prior.train)]
    heldout = np.concatenate([prior.valid[hit(prior.valid)], prior.test[hit(prior.test)]]) if regime != "interaction" \
        else np.zeros((0, 2), np.int64)
    keep = lambda p: p[~hit(p)]
    data = replace(prior, train=keep(prior.train), valid=keep(prior.valid), test=keep(prior.test),
                   deleted_users=users, deleted_items=items)
    return UnlearnContext(base=base, prior=prior, data=data, forget=forget, heldout=heldout,
                          new_users=users, new_items=items, seed=seed)


EXACT = ("retrain", "ultrare")  # exact methods: no final repair


def variant_params(params: Params, variant: str) -> tuple[str, Params]:
    """The method of a benchmark variant and the params it runs with: the backbone's recipe
    (unlearn_for), then the variant's switches."""
    params = unlearn_for(params)
    method, over, tru_over = VARIANTS[variant]
    up = params.unlearn.model_copy(update={**over, "tru": params.unlearn.tru.model_copy(update=tru_over)})
    return method, params.model_copy(update={"unlearn": up})


def erase_variant(params: Params, ctx, variant: str) -> dict:
    """A benchmark variant end to end, timed: the method, then (approximate methods) the final
    repair; the model the evaluation sees, with its seconds and epoch counts."""
    from tru.unlearning.methods import run_method
    from tru.unlearning.repair import final_repair

    if variant == "original":
        return {"model": ctx.base, "seconds": 0.0, "epochs": 0, "repair_epochs": 0}
    method, params = variant_params(params, variant)
    up = params.unlearn
    res = run_method(method, ctx, params)
    model, repair_epochs, seconds = res.model, 0, res.seconds
    if method not in EXACT:
        t0 = time.perf_counter()
        model, rlog = final_repair(model, ctx, params.repair, up.repair_lr, up.repair_batch_size, ctx.seed, params.train.threads)
        repair_epochs, seconds = rlog["epochs_run"], seconds + time.perf_counter() - t0
    epochs = len(res.log.get("epochs", [])) if method not in EXACT else res.log.get("best_epoch")
    return {"model": model, "seconds": seconds, "epochs": epochs, "repair_epochs": repair_epochs}


def _unlearn_cell(params_json: str, regime: str, seed: int, variant: str, checkpoint: str = "data/models/base") -> dict:
    from tru.stages import batch_metrics

    params = Params.model_validate_json(params_json)
    ctx = regime_context(unlearn_for(params), regime, seed, checkpoint=checkpoint)
    run = erase_variant(params, ctx, variant)
    m = batch_metrics(run["model"], ctx)
    return {
        "backbone": params.model.backbone, "regime": regime, "seed": seed, "method": variant,
        "seconds": round(run["seconds"], 2),
        "retain_recall@20": m["retain"]["recall@20"], "retain_ndcg@20": m["retain"]["ndcg@20"],
        "forget_recall@20": m["forget"]["recall@20"], "forget_ndcg@20": m["forget"]["ndcg@20"],
        "epochs": run["epochs"], "repair_epochs": run["repair_epochs"],
        "forget_pairs": len(ctx.forget), "peak_rss_mb": round(_peak_rss_mb()),
    }


def _original_cell(params_json: str, regime: str, seed: int, checkpoint: str = "data/models/base") -> dict:
    from tru.config import Params
    from tru.stages import batch_metrics

    params = Params.model_validate_json(params_json)
    ctx = regime_context(params, regime, seed, checkpoint=checkpoint)
    m = batch_metrics(ctx.base, ctx)
    return {"backbone": params.model.backbone, "regime": regime, "seed": seed, "method": "original", "seconds": 0.0,
            "retain_recall@20": m["retain"]["recall@20"], "retain_ndcg@20": m["retain"]["ndcg@20"],
            "forget_recall@20": m["forget"]["recall@20"], "forget_ndcg@20": m["forget"]["ndcg@20"],
            "epochs": 0, "repair_epochs": 0, "forget_pairs": len(ctx.forget), "peak_rss_mb": round(_peak_rss_mb())}


def bench_base_model(params: Params, split_dir: str | Path = "data/split", root: str | Path = "data/bench") -> str:
    """The base model of another backbone than the pipeline's, trained on the pipeline's split
    with its seed (a benchmark artifact, not a pipeline output): data/bench/base-<backbone>,
    trained again when the split, the backbone's params, the recipe or the seed changed."""
    from tru.io import read_json, sha256_tree

    backbone = params.model.backbone
    out = Path(root) / f"base-{backbone}"
    if (out / "checkpoint.json").is_file():
        meta = read_json(out / "checkpoint.json")
        stale = [why for why, same in (
            ("the split changed", meta.get("data", {}).get("split_sha256") == sha256_tree(split_dir)),
            (f"model.{backbone} changed", meta.get("model", {}).get("params") == getattr(params.model, backbone).model_dump()),
            ("the training recipe changed", meta.get("train") == params.train.recipe()),
            ("the seed changed", meta.get("seed") == params.seed)) if not same]
        if not stale and (out / "model.safetensors").is_file():
            return str(out)
        print(f"{out} is stale ({', '.join(stale) or 'weights missing'}): training it again", flush=True)
    print(f"training the {backbone} base model once -> {out}", flush=True)
    _in_child(_train_base, params.model_dump_json(), str(split_dir), str(out))
    return str(out)


def _train_base(params_json: str, split_dir: str, out: str) -> None:
    from tru.config import Params
    from tru.stages import train_stage

    train_stage(Params.model_validate_json(params_json), split_dir, out, f"{out}-train_log.json")


def unlearn_cell(params_json: str, regime: str, seed: int, method: str, checkpoint: str) -> dict:
    """One cell of the unlearning grid, in a fresh child process (its peak RSS is its own)."""
    if method == "original":
        return _in_child(_original_cell, params_json, regime, seed, checkpoint)
    return _in_child(_unlearn_cell, params_json, regime, seed, method, checkpoint)


def read_rows(out: Path) -> list[dict]:
    import pandas as pd

    if not out.is_file():
        return []
    df = pd.read_csv(out)
    if "backbone" not in df.columns:  # files written before MIG-GT: every row is MGCN's
        df.insert(0, "backbone", "mgcn")
    return df.to_dict("records")


def record_unlearn_row(out: str | Path, done: list[dict], row: dict) -> None:
    """Append a finished cell to the CSV at once (a killed benchmark resumes after it)."""
    import pandas as pd

    done.append(row)
    print(f"{row['backbone']:6s} {row['regime']:12s} seed {row['seed']} {row['method']:24s} "
          f"retain R@20 {row['retain_recall@20']:.4f}  forget R@20 {row['forget_recall@20']:.4f}  "
          f"{row['seconds']:.1f} s", flush=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(done).to_csv(out, index=False)


def bench_unlearn(params: Params, out: str | Path, seeds: list[int], regimes: list[str], methods: list[str],
                  checkpoint: str | Path = "data/models/base", run_cells=None) -> list[dict]:
    """Resumable: cells already in `out` (backbone, regime, seed, method) are skipped.

    `run_cells(params_json, cells, checkpoint, out, done)` runs the remaining cells and records
    each with record_unlearn_row; default: one after another here. flows/bench.py runs them
    as Prefect tasks on a configurable task runner (Dask: in parallel)."""
    import pandas as pd

    out = Path(out)
    done = read_rows(out)
    backbone = params.model.backbone
    have = {(r["backbone"], r["regime"], int(r["seed"]), r["method"]) for r in done}
    cells = [(regime, seed, method) for seed in seeds for regime in regimes for method in ["original"] + methods
             if (backbone, regime, seed, method) not in have]
    pj = params.model_dump_json()
    if run_cells is None:
        for regime, seed, method in cells:
            record_unlearn_row(out, done, unlearn_cell(pj, regime, seed, method, str(checkpoint)))
    else:
        run_cells(pj, cells, str(checkpoint), out, done)
    _plot_unlearn(pd.DataFrame(done), out.with_suffix(".png"))
    return done


def _plot_unlearn(df, path: Path) -> None:
    """Retain vs forget per backbone (rows) and regime (columns): one marker per method (mean
    over seeds, bars = min..max)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"mgcn": "MGCN", "miggt": "MIG-GT"}
    backbones = list(dict.fromkeys(df["backbone"]))
    regimes = [r for r in REGIMES if r in set(df["regime"])]
    methods = list(dict.fromkeys(df["method"]))
    markers = "osD^v<>pPX*h"
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(len(backbones), len(regimes), figsize=(4.4 * len(regimes), 4.0 * len(backbones) + 0.6),
                             dpi=120, squeeze=False)
    for row, backbone in zip(axes, backbones):
        for ax, regime in zip(row, regimes):
            sub = df[(df["regime"] == regime) & (df["backbone"] == backbone)]
            for k, method in enumerate(methods):
                cell = sub[sub["method"] == method]
                if cell.empty:
                    continue
                x, y = cell["forget_recall@20"], cell["retain_recall@20"]
                ax.errorbar(x.mean(), y.mean(), xerr=[[x.mean() - x.min()], [x.max() - x.mean()]],
                            yerr=[[y.mean() - y.min()], [y.max() - y.mean()]], fmt=markers[k % len(markers)],
                            color=colours(k % 10), capsize=2, markersize=6, label=method)
            ax.set_title(f"{names.get(backbone, backbone)}, {regime}-level ({sub['seed'].nunique()} seed(s))", fontsize=10)
            ax.set_xlabel("forget Recall@20 (lower is better)")
            ax.set_ylabel("retain test Recall@20 (higher is better)")
            ax.grid(alpha=0.3)
    labels = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                labels[lab] = h
    fig.legend(list(labels.values()), list(labels), loc="lower center", ncol=min(6, len(labels)), fontsize=8, frameon=False)
    fig.suptitle("ML-100k: retain vs forget per method (mean over seeds; bars: min to max)")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


# ------------------------------------------------------------------------ audit benchmark

AUDIT_METHODS = ("original", "retrain", "reverse_repair", "tru")


def _audit_cell(params_json: str, seed: int, method: str) -> dict:
    """User-level deletion (5% of real users plus the backdoor canary's fake users) from the
    canary-trained base model: the erasure by `method`, then the membership and backdoor
    audits exactly as `tru audit` runs them."""
    from tru.audit import canary as canary_mod
    from tru.audit.mia import membership_audit
    from tru.stages import batch_metrics

    params = Params.model_validate_json(params_json)
    canary = canary_mod.load("data/split")
    ctx = regime_context(params, "user", seed, delete_canary=True)
    run = erase_variant(params, ctx, method)
    model, seconds = run["model"], run["seconds"]
    if method != "original":
        model.set_graph(ctx.data.train, ctx.data.active_items)
    model.eval()
    ap = params.audit
    name = "original" if method == "original" else "audited"
    mia = membership_audit({name: model}, ctx.base, *ctx.membership_pairs(), ctx.data.train, ctx.data.n_users,
                           ctx.data.candidates, ctx.seed, ap.mia.folds, ap.mia.bootstrap, ap.mia.max_per_class)
    fake = np.asarray(canary["fake_users"], np.int64)
    normal = np.setdiff1d(np.unique(ctx.data.train[:, 0]), fake)
    bd = canary_mod.backdoor_metrics(model, canary, normal, ctx.data.train, ctx.data.n_users, ap.k,
                                     candidates=ctx.data.candidates)
    m = batch_metrics(model, ctx)
    single = mia["models"][name]
    best = single[single["best"]]
    row = {"seed": seed, "method": method, "seconds": round(seconds, 2),
           "mia_balanced_accuracy": best["balanced_accuracy"], "mia_ba_ci_low": best["balanced_accuracy_ci"][0],
           "mia_ba_ci_high": best["balanced_accuracy_ci"][1], "mia_auc": best["auc"],
           "mia_tpr_at_1pct_fpr": best["tpr_at_1pct_fpr"], "mia_attack": single["best"],
           "mia_ba_lr": single["lr"]["balanced_accuracy"], "mia_ba_gbm": single["gbm"]["balanced_accuracy"]}
    if name in mia["difference"]:
        d = mia["difference"][name]
        row["mia_difference_ba"] = d[d["best"]]["balanced_accuracy"]
    row.update({"backdoor_asr": bd["asr"], "backdoor_peer_asr": bd["peer_asr"], "backdoor_lift": bd["lift"],
                "backdoor_asr_trigger_users": bd["asr_trigger_users"],
                "target_median_rank": bd["median_rank"],
                "retain_recall@20": m["retain"]["recall@20"], "forget_recall@20": m["forget"]["recall@20"],
                "members": mia["n_members"], "non_members": mia["n_non_members"], "per_class": mia["sample_per_class"],
                "peak_rss_mb": round(_peak_rss_mb())})
    return row


def bench_audit(params: Params, out: str | Path, seeds: list[int], methods: list[str]) -> list[dict]:
    """Resumable (finished (seed, method) cells are skipped). Needs the canary-trained base
    model of the default pipeline (`make run` with canary.enabled)."""
    import pandas as pd

    from tru.audit.canary import load as load_canary
    from tru.errors import DataError

    if not load_canary("data/split"):
        raise DataError("data/split has no backdoor canary: set canary.enabled and run `make run` (or `dvc repro`) first")
    out = Path(out)
    done = pd.read_csv(out).to_dict("records") if out.is_file() else []
    have = {(int(r["seed"]), r["method"]) for r in done}
    pj = params.model_dump_json()
    for seed in seeds:
        for method in methods:
            if (seed, method) in have:
                continue
            row = _in_child(_audit_cell, pj, seed, method)
            done.append(row)
            print(f"seed {seed} {method:15s} MIA BA {row['mia_balanced_accuracy']:.3f} "
                  f"[{row['mia_ba_ci_low']:.3f}, {row['mia_ba_ci_high']:.3f}]  ASR {row['backdoor_asr']:.3f} "
                  f"(peers {row['backdoor_peer_asr']:.3f})  "
                  f"retain R@20 {row['retain_recall@20']:.4f}  {row['seconds']:.1f} s", flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(done).to_csv(out, index=False)
    _plot_audit(pd.DataFrame(done), out.with_suffix(".png"))
    return done


def _plot_audit(df, path: Path) -> None:
    """Three panels per method (mean over seeds as bars, one dot per seed): membership attack
    balanced accuracy, backdoor attack success rate (%, axis from 0 to at least 5% so a tiny
    rate looks tiny; x = the top-20 share of items of the target's real popularity, what the
    target should fall back to), and the canary target's median rank among normal users."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in AUDIT_METHODS if m in set(df["method"])]
    panels = (("mia_balanced_accuracy", 1.0, "membership attack balanced accuracy"),
              ("backdoor_asr", 100.0, "backdoor attack success rate (% of users, top-20)"),
              ("target_median_rank", 1.0, "canary target: median rank (1 = top)"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), dpi=120)
    for ax, (col, scale, label) in zip(axes, panels):
        for k, m in enumerate(methods):
            v = df.loc[df["method"] == m, col] * scale
            ax.bar(k, v.mean(), color="0.8", edgecolor="0.3")
            ax.plot([k] * len(v), v, "o", color="C0", markersize=4)
            if col == "backdoor_asr" and "backdoor_peer_asr" in df:
                peers = df.loc[df["method"] == m, "backdoor_peer_asr"].dropna() * scale
                ax.plot([k] * len(peers), peers, "x", color="C3", markersize=5,
                        label="items of the target's popularity" if k == 0 else None)
        ax.set_xticks(range(len(methods)), methods, fontsize=8)
        ax.set_ylabel(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].axhline(0.5, color="C3", lw=1, ls="--", label="chance")
    axes[0].legend(frameon=False, fontsize=8)
    if "backdoor_peer_asr" in df:
        axes[1].legend(frameon=False, fontsize=7)
    axes[1].set_ylim(0, max(5.0, float(df["backdoor_asr"].max()) * 100 * 1.2))
    fig.suptitle(f"ML-100k, MGCN, user-level 5% + canary: audits ({df['seed'].nunique()} seeds; bars = mean)")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


# --- the membership gate's calibration (tru bench mia-null) ----------------------------------------

MIA_NULL_PAIRS = (4, 8, 16, 25, 50, 100, 200, 400)


def bench_mia_null(params: Params, out: str | Path, pairs: tuple[int, ...] = MIA_NULL_PAIRS, draws: int = 200) -> list[dict]:
    """How often chance alone fails the membership check: per sample size (pairs per class),
    `draws` attacks on features without signal (tru.audit.mia.null_balanced_accuracy); the
    share above `audit.gate.max_mia_balanced_accuracy` is the gate's false refusals there."""
    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    from tru.audit.mia import null_balanced_accuracy

    limit = params.audit.gate.max_mia_balanced_accuracy
    rows = []
    for n in tqdm(pairs, desc="mia-null", unit="size"):
        ba = null_balanced_accuracy(n, draws, params.seed)
        rows.append({"pairs_per_class": n, "draws": draws, "mean": round(float(ba.mean()), 4),
                     "p95": round(float(np.percentile(ba, 95)), 4), "p99": round(float(np.percentile(ba, 99)), 4),
                     "max": round(float(ba.max()), 4), "threshold": limit,
                     "false_refusal_rate": round(float((ba > limit).mean()), 4)})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df.to_csv(out, index=False)
    _plot_mia_null(df, params.audit.gate.min_mia_pairs, out.with_suffix(".png"))
    return rows


def _plot_mia_null(df, min_pairs: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=120)
    x = df["pairs_per_class"]
    a.plot(x, df["mean"], "o-", label="mean")
    a.plot(x, df["p95"], "s--", label="95th percentile")
    a.plot(x, df["max"], "^:", label="max")
    a.axhline(df["threshold"].iloc[0], color="C3", lw=1, label="gate limit (max_mia_balanced_accuracy)")
    a.axhline(0.5, color="0.5", lw=0.8, ls="--")
    a.set_ylabel("best attack's balanced accuracy, no signal")
    b.plot(x, df["false_refusal_rate"] * 100, "o-", color="C3")
    b.set_ylabel("% of draws above the gate limit")
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xticks(list(x), [str(v) for v in x], fontsize=8)
        ax.minorticks_off()
        ax.axvline(min_pairs, color="0.3", lw=1, ls="-.", label="min_mia_pairs")
        ax.set_xlabel("pairs per class (forgotten = held-out)")
        ax.grid(alpha=0.3)
    a.legend(frameon=False, fontsize=7)
    fig.suptitle(f"The membership check on chance alone ({int(df['draws'].iloc[0])} draws per size)")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
