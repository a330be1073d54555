"""The grid report's plots, from the summary (tru.bench.grid.report.summarise): retain against
forget Recall@20 per setting, and each approximate method's time as a share of Retrain's."""

from __future__ import annotations

from pathlib import Path

from tru.bench.grid.methods import METHOD_ORDER, REFERENCE, RETRAINS


def _settings(s) -> list[tuple]:
    """The summary's (dataset, backbone, regime) settings, in order of appearance."""
    return list(dict.fromkeys(zip(s["dataset"], s["backbone"], s["regime"])))


def plot_frontier(s, path: Path) -> None:
    """Retain Recall@20 (up is better) against Forget Recall@20 (left is better), one panel
    per setting of the summary `s`, one marker per method (mean over seeds, bars = spread);
    Retrain is the target the approximate methods should land on. Written to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = _settings(s)
    cols = min(3, len(settings))
    rows = -(-len(settings) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), dpi=110, squeeze=False)
    methods = [m for m in METHOD_ORDER if m in set(s["method"])] + sorted(set(s["method"]) - set(METHOD_ORDER))
    markers = dict(zip(methods, "o*sPDv^<>hpXd8H1+x|_"))  # one marker and one colour per method
    colours = matplotlib.color_sequences["tab20"]  # the tab20 colour map's 20 colours
    for ax, (d, b, r) in zip(axes.flat, settings):
        sub = s[(s.dataset == d) & (s.backbone == b) & (s.regime == r)]
        for k, m in enumerate(methods):
            row = sub[sub.method == m]
            if row.empty:
                continue
            row = row.iloc[0]
            ax.errorbar(
                row["forget_recall@20_mean"],
                row["retain_recall@20_mean"],
                xerr=row["forget_recall@20_std"] if row["seeds"] > 1 else None,
                yerr=row["retain_recall@20_std"] if row["seeds"] > 1 else None,
                fmt=markers.get(m, "o"),
                color=colours[(2 * k) % 20 + (k >= 10)],
                ms=9 if m == "tru" else 6,
                capsize=2,
                label=m,
            )
        ax.set_title(f"{d} · {b} · {r}", fontsize=9)
        ax.set_xlabel("forget Recall@20 (lower = forgotten)", fontsize=8)
        ax.set_ylabel("retain Recall@20", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(settings) :]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(6, len(names)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08 if len(names) > 6 else 0.05, 1, 1))
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def plot_time(s, path: Path) -> None:
    """Seconds of each approximate method as a share of Retrain's, per setting of the summary
    `s` (log scale): the 10% line is the target of the unlearning benchmark. Written to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = s[~s.method.isin(REFERENCE + RETRAINS)].dropna(subset=["time_pct_of_retrain_mean"])
    settings = _settings(sub)
    methods = [m for m in METHOD_ORDER if m in set(sub["method"])] + sorted(set(sub["method"]) - set(METHOD_ORDER))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(settings) * max(1, len(methods)) / 3), 3.8), dpi=110)
    width = 0.8 / max(1, len(methods))
    for k, m in enumerate(methods):
        for j, st in enumerate(settings):
            row = sub[(sub.dataset == st[0]) & (sub.backbone == st[1]) & (sub.regime == st[2]) & (sub.method == m)]
            if not row.empty:
                ax.bar(
                    j + k * width,
                    row.iloc[0]["time_pct_of_retrain_mean"],
                    width,
                    color=f"C{k % 10}",
                    label=m if j == 0 else None,
                )
    ax.axhline(10, color="C3", ls="--", lw=1, label="10% of Retrain")
    ax.set_yscale("log")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(settings))], ["\n".join(st) for st in settings], fontsize=7)
    ax.set_ylabel("seconds, % of Retrain's (log)")
    ax.legend(fontsize=7, ncol=3, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def plot_over_exact(found: list[dict], path: Path) -> None:
    """What TRU adds over the exact step (tru.bench.grid.claims.over_exact rows `found`): per
    setting, the paired difference of the distance to Retrain's forget Recall@20 (TRU minus the
    exact baseline; left of 0 is TRU nearer) with its 95% interval, Retrain's noise floor as a
    grey band around 0 (inside it: no measurable difference), and the retain difference beside
    it. Written to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [
        f"{r['dataset']} · {r['backbone']} · {r['regime']}\n(loop ran on {r['loop_seeds']}/{r['seeds']} seeds)"
        for r in found
    ]
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(9, 1.8 + 0.55 * len(found)), dpi=110, sharey=True)
    for ax, col, label in (
        (axes[0], "gap_diff", "Δ distance to Retrain's forget R@20\n(TRU − exact baseline; < 0: TRU nearer)"),
        (axes[1], "retain_diff", "Δ retain Recall@20\n(TRU − exact baseline)"),
    ):
        for y, r in enumerate(found):
            low, high = r[f"{col}_low"], r[f"{col}_high"]
            err = None if low != low else [[r[col] - low], [high - r[col]]]
            colour = {"nearer": "C2", "farther": "C3"}.get(r["verdict"], "0.3") if col == "gap_diff" else "C0"
            ax.errorbar(r[col], y, xerr=err, fmt="o", color=colour, capsize=3)
            if col == "gap_diff" and r["floor"]:
                ax.fill_betweenx([y - 0.35, y + 0.35], -r["floor"], r["floor"], color="0.85", lw=0)
        ax.axvline(0, color="0.4", lw=1)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, symmetric=True))  # few ticks: the values are small
        ax.tick_params(labelsize=7)
        ax.set_xlabel(label, fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(found)), names, fontsize=7)
    axes[0].invert_yaxis()
    axes[0].set_title("grey: Retrain's noise floor", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
