"""The unlearning benchmark (`tru bench unlearn`): deletions of each regime drawn per seed from
the default dataset, erased by each benchmark variant, one CSV row per cell, and its plot.

Its deletion and erasure steps (regime_context, erase_variant) and the base model of another
backbone (bench_base_model) are also the comparison grid's and the audit benchmark's.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tru import paths
from tru.audit.canary import load as load_canary
from tru.bench.grid.methods import REPLICATES as REPLICATE_NAMES
from tru.bench.process import in_child, peak_rss_mb
from tru.bench.store import ResultsStore
from tru.checkpoint import load_checkpoint
from tru.config import Params, unlearn_for
from tru.data.dataset import load_split
from tru.io import read_json, sha256_tree
from tru.stages.model import train_stage

if TYPE_CHECKING:
    from tru.unlearning import UnlearnContext

REGIMES = {"user": 0.05, "item": 0.02, "interaction": 0.05}
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # name: (method, unlearn overrides, tru switch overrides)
    "retrain": ("retrain", {}, {}),
    "exact": ("exact", {}, {}),
    "reverse_repair": ("reverse_repair", {}, {}),
    "gradient_ascent": ("gradient_ascent", {}, {}),
    "multidelete": ("multidelete", {}, {}),
    "scalegun": ("scalegun", {}, {}),
    "ultrare": ("ultrare", {}, {}),
    "tru": ("tru", {}, {}),
    "tru_no_gate": ("tru", {}, {"gate": False}),
    "tru_no_scaling": ("tru", {}, {"scaling": False}),
    # the control of scaling: the scales' parameter-weighted mean as one step for every branch
    "tru_uniform_lr": ("tru", {}, {"scale_uniform": True}),
    "tru_no_selection": ("tru", {}, {"selection": False}),
    "tru_no_exact": ("tru", {"exact_erasure": False}, {}),
    # TRU's item and user re-fit and its check before the first reverse epoch, offered to the
    # others: the exact step with them and no reverse epoch, and MMRecUn's uniform loop with
    # them (TRU with its three mechanisms off). TRU against these is what the gate, scaling
    # and selection add, and the reverse epochs at all
    "exact_refit": ("tru", {"max_epochs": 0}, {}),
    "reverse_repair_refit": ("tru", {}, {"gate": False, "scaling": False, "selection": False}),
    "reverse_repair_no_exact": ("reverse_repair", {"exact_erasure": False}, {}),
}
# Retrain replicates: the same retain set trained again with another training seed (params.seed
# plus the offset). Their spread is Retrain's own noise floor: a method's gap to Retrain within
# it is as near as another retrain would be.
REPLICATES = {name: k for k, name in enumerate(REPLICATE_NAMES, start=1)}
for _name in REPLICATES:
    VARIANTS[_name] = ("retrain", {}, {})
EXACT = ("retrain", "ultrare")  # exact methods: no final repair
KEY = ("backbone", "regime", "seed", "method")


def regime_context(
    params: Params,
    regime: str,
    seed: int,
    split_dir: str | Path = paths.SPLIT,
    checkpoint: str | Path = paths.BASE_MODEL,
    delete_canary: bool = False,
    n_users: int | None = None,
) -> UnlearnContext:
    """A deletion of the given regime drawn with `seed` from the split in `split_dir`, in memory:
    the UnlearnContext of the base model at `checkpoint`. The backdoor canary's fake users (when
    the split has them) are never drawn; with `delete_canary` they are deleted too (user regime).
    `n_users`: the user regime's number of users instead of its share (at most the real users)."""
    from tru.unlearning import UnlearnContext  # why: scikit-learn; the grid's spec imports this module

    prior = load_split(split_dir)
    base, _ = load_checkpoint(checkpoint, prior.features)
    base.set_graph(prior.train)
    rng = np.random.default_rng(seed)
    share = REGIMES[regime]
    users = items = np.zeros(0, np.int64)
    canary = load_canary(split_dir) or {}
    fake = np.asarray(canary.get("fake_users", []), np.int64)
    targets = [int(canary["target_item"])] if canary and delete_canary and regime == "user" else []
    if regime == "user":
        active = np.setdiff1d(np.unique(prior.train[:, 0]), fake)
        size = max(1, round(share * len(active))) if n_users is None else min(n_users, len(active))
        users = np.sort(rng.choice(active, size=size, replace=False))
        if delete_canary:
            users = np.union1d(users, fake)

        def hit(p: np.ndarray) -> np.ndarray:
            return np.isin(p[:, 0], users)

    elif regime == "item":
        active = np.unique(prior.train[:, 1])
        items = np.sort(rng.choice(active, size=max(1, round(share * len(active))), replace=False))

        def hit(p: np.ndarray) -> np.ndarray:
            return np.isin(p[:, 1], items)

    else:
        real = np.flatnonzero(~np.isin(prior.train[:, 0], fake))
        chosen = np.zeros(len(prior.train), bool)
        chosen[rng.choice(real, size=max(1, round(share * len(real))), replace=False)] = True
        keys = prior.train[chosen, 0] * prior.n_items + prior.train[chosen, 1]

        def hit(p: np.ndarray) -> np.ndarray:
            return np.isin(p[:, 0] * prior.n_items + p[:, 1], keys)

    forget = prior.train[hit(prior.train)]
    heldout = (
        np.concatenate([prior.valid[hit(prior.valid)], prior.test[hit(prior.test)]])
        if regime != "interaction"
        else np.zeros((0, 2), np.int64)
    )

    def keep(p: np.ndarray) -> np.ndarray:
        return p[~hit(p)]

    data = replace(
        prior,
        train=keep(prior.train),
        valid=keep(prior.valid),
        test=keep(prior.test),
        shadow=keep(prior.shadow),
        deleted_users=users,
        deleted_items=items,
    )
    return UnlearnContext(
        base=base,
        prior=prior,
        data=data,
        forget=forget,
        heldout=heldout,
        heldout_shadow=prior.shadow[hit(prior.shadow)],
        new_users=users,
        new_items=items,
        seed=seed,
        fake_users=fake,
        targets=np.asarray(targets, np.int64),
    )


def canary_backdoor(model, ctx: UnlearnContext, canary: dict, k: int) -> dict:
    """The backdoor canary's measures on `model` (tru.audit.canary.backdoor_metrics) for the
    normal users, every training user but the canary's fake users."""
    from tru.audit.canary import backdoor_metrics

    fake = np.asarray(canary["fake_users"], np.int64)
    normal = np.setdiff1d(np.unique(ctx.data.train[:, 0]), fake)
    return backdoor_metrics(model, canary, normal, ctx.data.train, ctx.data.n_users, k, candidates=ctx.data.candidates)


def variant_params(params: Params, variant: str) -> tuple[str, Params]:
    """The method of a benchmark variant and the params it runs with: the backbone's recipe
    (unlearn_for), then the variant's switches."""
    params = unlearn_for(params)
    method, over, tru_over = VARIANTS[variant]
    up = params.unlearn.model_copy(update={**over, "tru": params.unlearn.tru.model_copy(update=tru_over)})
    return method, params.model_copy(update={"unlearn": up, "seed": params.seed + REPLICATES.get(variant, 0)})


def erase_variant(params: Params, ctx: UnlearnContext, variant: str, tune=None) -> dict:
    """A benchmark variant end to end on the deletion `ctx`, timed: the method, then (approximate
    methods) the final repair. Returns the model the evaluation sees (`model`), with its
    `seconds`, `epochs` and `repair_epochs`; `original` is the base model, untouched. `tune`:
    params -> params applied last, over the variant's recipe (a knob of `tru bench sensitivity`)."""
    # why: scikit-learn; the grid's spec imports this module
    from tru.unlearning import run_method
    from tru.unlearning.repair import final_repair

    if variant == "original":
        return {"model": ctx.base, "seconds": 0.0, "epochs": 0, "repair_epochs": 0}
    method, params = variant_params(params, variant)
    if tune is not None:
        params = tune(params)
    up = params.unlearn
    res = run_method(method, ctx, params)
    model, repair_epochs, seconds = res.model, 0, res.seconds
    if method not in EXACT:
        t0 = time.perf_counter()
        model, rlog = final_repair(
            model,
            ctx,
            params.repair,
            up.repair_lr,
            up.repair_batch_size,
            ctx.seed,
            params.train.threads,
            checks=params.audit.gate,
        )
        repair_epochs, seconds = rlog["epochs_run"], seconds + time.perf_counter() - t0
    epochs = len(res.log.get("epochs", [])) if method not in EXACT else res.log.get("best_epoch")
    return {"model": model, "seconds": seconds, "epochs": epochs, "repair_epochs": repair_epochs}


def _unlearn_cell(
    params_json: str, regime: str, seed: int, variant: str, checkpoint: str = str(paths.BASE_MODEL)
) -> dict:
    from tru.stages.context import batch_metrics  # why: scikit-learn; the grid's spec imports this module

    params = Params.model_validate_json(params_json)
    ctx = regime_context(unlearn_for(params), regime, seed, checkpoint=checkpoint)
    run = erase_variant(params, ctx, variant)
    m = batch_metrics(run["model"], ctx)
    return {
        "backbone": params.model.backbone,
        "regime": regime,
        "seed": seed,
        "method": variant,
        "seconds": round(run["seconds"], 2),
        "retain_recall@20": m["retain"]["recall@20"],
        "retain_ndcg@20": m["retain"]["ndcg@20"],
        "forget_recall@20": m["forget"]["recall@20"],
        "forget_ndcg@20": m["forget"]["ndcg@20"],
        "epochs": run["epochs"],
        "repair_epochs": run["repair_epochs"],
        "forget_pairs": len(ctx.forget),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def _original_cell(params_json: str, regime: str, seed: int, checkpoint: str = str(paths.BASE_MODEL)) -> dict:
    from tru.stages.context import batch_metrics  # why: scikit-learn; the grid's spec imports this module

    params = Params.model_validate_json(params_json)
    ctx = regime_context(params, regime, seed, checkpoint=checkpoint)
    m = batch_metrics(ctx.base, ctx)
    return {
        "backbone": params.model.backbone,
        "regime": regime,
        "seed": seed,
        "method": "original",
        "seconds": 0.0,
        "retain_recall@20": m["retain"]["recall@20"],
        "retain_ndcg@20": m["retain"]["ndcg@20"],
        "forget_recall@20": m["forget"]["recall@20"],
        "forget_ndcg@20": m["forget"]["ndcg@20"],
        "epochs": 0,
        "repair_epochs": 0,
        "forget_pairs": len(ctx.forget),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def bench_base_model(
    params: Params, split_dir: str | Path = paths.SPLIT, root: str | Path = paths.BENCH_SCRATCH
) -> str:
    """The base model of another backbone than the pipeline's, trained on the pipeline's split
    with its seed (a benchmark artifact, not a pipeline output): data/bench/base-<backbone>,
    trained again when the split, the backbone's params, the recipe or the seed changed.
    Returns its folder."""
    backbone = params.model.backbone
    out = Path(root) / f"base-{backbone}"
    if (out / "checkpoint.json").is_file():
        meta = read_json(out / "checkpoint.json")
        stale = [
            why
            for why, same in (
                ("the split changed", meta.get("data", {}).get("split_sha256") == sha256_tree(split_dir)),
                (
                    f"model.{backbone} changed",
                    meta.get("model", {}).get("params") == getattr(params.model, backbone).model_dump(),
                ),
                ("the training recipe changed", meta.get("train") == params.train.recipe()),
                ("the seed changed", meta.get("seed") == params.seed),
            )
            if not same
        ]
        if not stale and (out / "model.safetensors").is_file():
            return str(out)
        print(f"{out} is stale ({', '.join(stale) or 'weights missing'}): training it again", flush=True)
    print(f"training the {backbone} base model once -> {out}", flush=True)
    in_child(_train_base, params.model_dump_json(), str(split_dir), str(out))
    return str(out)


def _train_base(params_json: str, split_dir: str, out: str) -> None:
    train_stage(Params.model_validate_json(params_json), split_dir, out, f"{out}-train_log.json")


def unlearn_cell(params_json: str, regime: str, seed: int, method: str, checkpoint: str) -> dict:
    """One cell of the unlearning benchmark (a variant, or `original`: the base model) in a fresh
    child process (its peak RSS is its own): its CSV row."""
    if method == "original":
        return in_child(_original_cell, params_json, regime, seed, checkpoint)
    return in_child(_unlearn_cell, params_json, regime, seed, method, checkpoint)


def _progress(row: dict) -> str:
    return (
        f"{row['backbone']:6s} {row['regime']:12s} seed {row['seed']} {row['method']:24s} "
        f"retain R@20 {row['retain_recall@20']:.4f}  forget R@20 {row['forget_recall@20']:.4f}  "
        f"{row['seconds']:.1f} s"
    )


def unlearn_store(out: str | Path) -> ResultsStore:
    """The unlearning benchmark's results CSV at `out` (one row per backbone, regime, seed and
    method). Files written before MIG-GT have no backbone column: every row there is MGCN's."""
    return ResultsStore(Path(out), KEY, _progress, fill={"backbone": "mgcn"})


def bench_unlearn(
    params: Params,
    out: str | Path,
    seeds: list[int],
    regimes: list[str],
    methods: list[str],
    checkpoint: str | Path = paths.BASE_MODEL,
    run_cells=None,
) -> list[dict]:
    """Every (regime, seed, method) cell of `params`' backbone, `original` first, each a CSV row
    in `out`, then the plot beside it (.png); returns every row of `out`. Resumable: cells
    already in `out` (backbone, regime, seed, method) are skipped.

    `run_cells(params_json, cells, checkpoint, out, done)` runs the remaining cells and records
    each with unlearn_store(out).record; default: one after another here. flows/bench.py runs
    them as Prefect tasks on a configurable task runner (Dask: in parallel)."""
    out = Path(out)
    store = unlearn_store(out)
    done = store.read()
    backbone = params.model.backbone
    have = store.finished(done)
    cells = [
        (regime, seed, method)
        for seed in seeds
        for regime in regimes
        for method in ["original"] + methods
        if (backbone, regime, seed, method) not in have
    ]
    pj = params.model_dump_json()
    if run_cells is None:
        for regime, seed, method in cells:
            store.record(done, unlearn_cell(pj, regime, seed, method, str(checkpoint)))
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
    fig, axes = plt.subplots(
        len(backbones), len(regimes), figsize=(4.4 * len(regimes), 4.0 * len(backbones) + 0.6), dpi=120, squeeze=False
    )
    for row, backbone in zip(axes, backbones):
        for ax, regime in zip(row, regimes):
            sub = df[(df["regime"] == regime) & (df["backbone"] == backbone)]
            for k, method in enumerate(methods):
                cell = sub[sub["method"] == method]
                if cell.empty:
                    continue
                x, y = cell["forget_recall@20"], cell["retain_recall@20"]
                ax.errorbar(
                    x.mean(),
                    y.mean(),
                    xerr=[[x.mean() - x.min()], [x.max() - x.mean()]],
                    yerr=[[y.mean() - y.min()], [y.max() - y.mean()]],
                    fmt=markers[k % len(markers)],
                    color=colours(k % 10),
                    capsize=2,
                    markersize=6,
                    label=method,
                )
            ax.set_title(
                f"{names.get(backbone, backbone)}, {regime}-level ({sub['seed'].nunique()} seed(s))", fontsize=10
            )
            ax.set_xlabel("forget Recall@20 (lower is better)")
            ax.set_ylabel("retain test Recall@20 (higher is better)")
            ax.grid(alpha=0.3)
    labels = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                labels[lab] = h
    fig.legend(
        list(labels.values()), list(labels), loc="lower center", ncol=min(6, len(labels)), fontsize=8, frameon=False
    )
    fig.suptitle("ML-100k: retain vs forget per method (mean over seeds; bars: min to max)")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
