"""The grid report's plots, from the summary (tru.bench.grid.report.summarise): retain against
forget Recall@20 per setting, and each approximate method's time as a share of Retrain's."""

from __future__ import annotations

from pathlib import Path

from tru.bench.grid.methods import METHOD_ORDER, REFERENCE, RETRAINS


def _settings(s) -> list[tuple]:
    """The summary's (dataset, backbone, regime) settings, in order of appearance."""
    return list(dict.fromkeys(zip(s["dataset"], s["backbone"], s["regime"])))


def _panel_grid(n: int) -> tuple[int, int]:
    """Columns and rows of a figure of `n` small panels, three to a row (at least one)."""
    cols = max(1, min(3, n))
    return cols, max(1, -(-n // cols))


def plot_frontier(s, path: Path) -> None:
    """Retain Recall@20 (up is better) against Forget Recall@20 (left is better), one panel
    per setting of the summary `s`, one marker per method (mean over seeds, bars = spread);
    Retrain is the target the approximate methods should land on. Written to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = _settings(s)
    cols, rows = _panel_grid(len(settings))
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
    """Seconds of each approximate method as a share of Retrain's (log scale), one small panel
    per setting of the summary `s`, three to a row, one horizontal bar per method with its
    value, TRU's in colour; the dashed 10% line is the target of the unlearning benchmark. The
    panels share their axis, so bars compare across settings; the figure's size grows with the
    number of settings in rows, never in width. Written to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = s[~s.method.isin(REFERENCE + RETRAINS)].dropna(subset=["time_pct_of_retrain_mean"])
    settings = _settings(sub)
    methods = [m for m in METHOD_ORDER if m in set(sub["method"])] + sorted(set(sub["method"]) - set(METHOD_ORDER))
    cols, rows = _panel_grid(len(settings))
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.2 * cols, (0.5 + 0.2 * len(methods)) * rows + 0.4), dpi=110, sharex=True, squeeze=False
    )
    for ax, (d, b, r) in zip(axes.flat, settings):
        here = sub[(sub.dataset == d) & (sub.backbone == b) & (sub.regime == r)].set_index("method")
        shown = [m for m in methods if m in here.index]
        values = [float(here.loc[m, "time_pct_of_retrain_mean"]) for m in shown]
        ax.barh(range(len(shown)), values, color=["C0" if m == "tru" else "0.65" for m in shown], height=0.7)
        for y, v in enumerate(values):
            label = f"{v:.1f}" if v >= 1 else f"{v:.2g}"
            ax.annotate(label, (v, y), xytext=(2, 0), textcoords="offset points", va="center", fontsize=6)
        ax.axvline(10, color="C3", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_yticks(range(len(shown)), shown, fontsize=7)
        ax.set_ylim(len(methods) - 0.5, -0.5)  # bars as thick in every panel, the first on top
        ax.set_title(f"{d} · {b} · {r}", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    every = sub["time_pct_of_retrain_mean"].to_numpy(dtype=float)
    every = every[every > 0]
    if len(every):  # room right of the longest bar for its value (the panels share the axis)
        axes[0, 0].set_xlim(min(every.min(), 10) / 2, max(every.max(), 10) * 6)
    for ax in list(axes.flat)[len(settings) :]:
        ax.axis("off")
    for c in range(cols):  # the lowest panel of each column carries its axis (shared ones hide it)
        ax = axes[(len(settings) - 1 - c) // cols, c]
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.set_xlabel("seconds, % of Retrain's (log)", fontsize=7)
    fig.suptitle("erase + repair time as a share of Retrain's (dashed: 10%)", fontsize=9)
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
