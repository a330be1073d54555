"""The audit benchmark (`tru bench audit`): a user-level deletion with the backdoor canary's fake
users, erased per method from the canary-trained base model, then the membership and backdoor
audits as `tru audit` runs them; one CSV row per (seed, method), and its plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tru import paths
from tru.audit import canary as canary_mod
from tru.audit.run import context_membership
from tru.bench.process import in_child, peak_rss_mb
from tru.bench.store import ResultsStore
from tru.bench.unlearn import erase_variant, regime_context
from tru.config import Params
from tru.errors import ConfigError, DataError
from tru.stages.context import batch_metrics

AUDIT_METHODS = ("original", "retrain", "reverse_repair", "tru")
REFERENCES = 2  # reference models of the LiRA attack per seed (exact retrains, other training seeds)


def reference_models(params: Params, ctx, seed: int, count: int, root: Path = paths.BENCH_SCRATCH) -> list:
    """`count` exact retrains of the deletion `ctx` (drawn with `seed`) on its retain set, with
    training seeds params.seed + 1, + 2, ... (never the audited Retrain's own): the reference
    (OUT) models of tru.audit.lira. Each is kept under root/audit-references/ and trained again
    only when the split, the recipe, the model or a seed changed."""
    from tru.checkpoint import load_checkpoint, save_checkpoint
    from tru.io import read_json, sha256_tree
    from tru.unlearning import run_method

    out = []
    for k in range(1, count + 1):
        p = params.model_copy(update={"seed": params.seed + k})
        folder = root / "audit-references" / f"seed{seed}-r{k}"
        meta = {
            "split_sha256": sha256_tree(paths.SPLIT),
            "recipe": p.train.recipe(),
            "model_params": p.model.model_dump(mode="json"),
            "train_seed": p.seed,
            "deletion_seed": seed,
        }
        if (folder / "checkpoint.json").is_file() and all(
            read_json(folder / "checkpoint.json").get(key) == v for key, v in meta.items()
        ):
            model, _ = load_checkpoint(folder, ctx.data.features)
        else:
            print(f"  training reference model {k} of {count} for seed {seed} -> {folder}", flush=True)
            model = run_method("retrain", ctx, p).model
            save_checkpoint(folder, model, meta)
        model.set_graph(ctx.data.train, ctx.data.active_items)
        model.eval()
        out.append(model)
    return out


def _audit_cell(params_json: str, seed: int, method: str, references: int = REFERENCES) -> dict:
    """User-level deletion (5% of real users plus the backdoor canary's fake users) from the
    canary-trained base model: the erasure by `method`, then the membership and backdoor
    audits exactly as `tru audit` runs them, and the reference-model attack (tru.audit.lira)
    against `references` exact retrains of the same deletion (none: 0)."""
    params = Params.model_validate_json(params_json)
    canary = canary_mod.load(paths.SPLIT)
    assert canary is not None  # bench_audit refuses a split without one
    ctx = regime_context(params, "user", seed, delete_canary=True)
    run = erase_variant(params, ctx, method)
    model, seconds = run["model"], run["seconds"]
    if method != "original":
        model.set_graph(ctx.data.train, ctx.data.active_items)
    model.eval()
    ap = params.audit
    name = "original" if method == "original" else "audited"
    mia = context_membership({name: model}, ctx, ap.mia)
    fake = np.asarray(canary["fake_users"], np.int64)
    normal = np.setdiff1d(np.unique(ctx.data.train[:, 0]), fake)
    bd = canary_mod.backdoor_metrics(
        model, canary, normal, ctx.data.train, ctx.data.n_users, ap.k, candidates=ctx.data.candidates
    )
    m = batch_metrics(model, ctx)
    lira = {}
    if references >= 2:
        from tru.audit.lira import reference_attack
        from tru.audit.mia import balanced_sample

        members, non = ctx.membership_pairs()
        pairs, y = balanced_sample(members, non, ap.mia.max_per_class, seed)
        refs = reference_models(params, ctx, seed, references)
        lira = reference_attack(
            model, refs, pairs, y, ctx.data.train, ctx.data.n_users, ctx.data.candidates, ap.mia.bootstrap, seed
        )
    single = mia["models"][name]
    best = single[single["best"]]
    row = {
        "seed": seed,
        "method": method,
        "seconds": round(seconds, 2),
        "mia_balanced_accuracy": best["balanced_accuracy"],
        "mia_ba_ci_low": best["balanced_accuracy_ci"][0],
        "mia_ba_ci_high": best["balanced_accuracy_ci"][1],
        "mia_auc": best["auc"],
        "mia_tpr_at_1pct_fpr": best["tpr_at_1pct_fpr"],
        "mia_attack": single["best"],
        "mia_ba_lr": single["lr"]["balanced_accuracy"],
        "mia_ba_gbm": single["gbm"]["balanced_accuracy"],
    }
    if name in mia["difference"]:
        d = mia["difference"][name]
        row["mia_difference_ba"] = d[d["best"]]["balanced_accuracy"]
    row.update(
        {
            "backdoor_asr": bd["asr"],
            "backdoor_peer_asr": bd["peer_asr"],
            "backdoor_lift": bd["lift"],
            "backdoor_asr_trigger_users": bd["asr_trigger_users"],
            "target_median_rank": bd["median_rank"],
            "retain_recall@20": m["retain"]["recall@20"],
            "forget_recall@20": m["forget"]["recall@20"],
            "members": mia["n_members"],
            "non_members": mia["n_non_members"],
            "per_class": mia["sample_per_class"],
            "peak_rss_mb": round(peak_rss_mb()),
        }
    )
    if lira:
        row.update(
            {
                "lira_auc": lira["auc"],
                "lira_auc_ci_low": lira["auc_ci"][0],
                "lira_auc_ci_high": lira["auc_ci"][1],
                "lira_tpr_at_1pct_fpr": lira["tpr_at_1pct_fpr"],
                "lira_tpr_at_1pct_fpr_ci_low": lira["tpr_at_1pct_fpr_ci"][0],
                "lira_tpr_at_1pct_fpr_ci_high": lira["tpr_at_1pct_fpr_ci"][1],
                "lira_tpr_at_0.1pct_fpr": lira["tpr_at_0.1pct_fpr"],
                "lira_tpr_at_0.1pct_fpr_ci_low": lira["tpr_at_0.1pct_fpr_ci"][0],
                "lira_tpr_at_0.1pct_fpr_ci_high": lira["tpr_at_0.1pct_fpr_ci"][1],
                "lira_references": lira["references"],
                "lira_pairs_per_class": lira["members"],
            }
        )
    return row


def _progress(row: dict) -> str:
    return (
        f"seed {row['seed']} {row['method']:15s} MIA BA {row['mia_balanced_accuracy']:.3f} "
        f"[{row['mia_ba_ci_low']:.3f}, {row['mia_ba_ci_high']:.3f}]  ASR {row['backdoor_asr']:.3f} "
        f"(peers {row['backdoor_peer_asr']:.3f})  "
        f"retain R@20 {row['retain_recall@20']:.4f}  {row['seconds']:.1f} s"
    )


def audit_store(out: str | Path) -> ResultsStore:
    """The audit benchmark's results CSV at `out` (one row per seed and method)."""
    return ResultsStore(Path(out), ("seed", "method"), _progress)


def bench_audit(
    params: Params, out: str | Path, seeds: list[int], methods: list[str], references: int = REFERENCES
) -> list[dict]:
    """Every (seed, method) cell, each a CSV row in `out`, then the plot beside it (.png);
    returns every row of `out`. Resumable (finished (seed, method) cells are skipped). Needs the
    canary-trained base model of the default pipeline (`make run` with canary.enabled).
    `references`: exact retrains per seed for the reference-model attack (0: not run; 1 is
    refused, the attack's variance needs two)."""
    if references == 1:
        raise ConfigError("--references 1: the reference-model attack needs at least 2 reference models (or 0: off)")
    if not canary_mod.load(paths.SPLIT):
        raise DataError(
            f"{paths.SPLIT} has no backdoor canary: set canary.enabled and run `make run` (or `dvc repro`) first"
        )
    out = Path(out)
    store = audit_store(out)
    done = store.read()
    have = store.finished(done)
    pj = params.model_dump_json()
    for seed in seeds:
        for method in methods:
            if (seed, method) in have:
                continue
            store.record(done, in_child(_audit_cell, pj, seed, method, references))
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
    panels = [
        ("mia_balanced_accuracy", 1.0, "membership attack balanced accuracy"),
        ("backdoor_asr", 100.0, "backdoor attack success rate (% of users, top-20)"),
        ("target_median_rank", 1.0, "canary target: median rank (1 = top)"),
    ]
    if "lira_tpr_at_1pct_fpr" in df and df["lira_tpr_at_1pct_fpr"].notna().any():
        panels.append(("lira_tpr_at_1pct_fpr", 100.0, "LiRA vs reference retrains: TPR (%) at 1% FPR"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.8), dpi=120)
    for ax, (col, scale, label) in zip(axes, panels):
        for k, m in enumerate(methods):
            v = df.loc[df["method"] == m, col].dropna() * scale
            ax.bar(k, v.mean(), color="0.8", edgecolor="0.3")
            ax.plot([k] * len(v), v, "o", color="C0", markersize=4)
            if col == "backdoor_asr" and "backdoor_peer_asr" in df:
                peers = df.loc[df["method"] == m, "backdoor_peer_asr"].dropna() * scale
                ax.plot(
                    [k] * len(peers),
                    peers,
                    "x",
                    color="C3",
                    markersize=5,
                    label="items of the target's popularity" if k == 0 else None,
                )
        ax.set_xticks(range(len(methods)), methods, fontsize=8)
        ax.set_ylabel(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].axhline(0.5, color="C3", lw=1, ls="--", label="chance")
    axes[0].legend(frameon=False, fontsize=8)
    if "backdoor_peer_asr" in df:
        axes[1].legend(frameon=False, fontsize=7)
    axes[1].set_ylim(0, max(5.0, float(df["backdoor_asr"].max()) * 100 * 1.2))
    if len(panels) > 3:
        axes[3].axhline(1.0, color="C3", lw=1, ls="--", label="chance (TPR = FPR)")
        axes[3].legend(frameon=False, fontsize=8)
    fig.suptitle(f"ML-100k, MGCN, user-level 5% + canary: audits ({df['seed'].nunique()} seeds; bars = mean)")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
