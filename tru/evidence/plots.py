"""The evidence's figures: small matplotlib plots as SVG data URIs with deterministic bytes
(fixed hash salt for element ids, no date, text as paths so no font is needed to view them).

Each function takes plain lists/dicts and returns a `data:` URI, or None when there is
nothing to plot. The object-oriented Figure API is used, so no pyplot backend is touched.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

# matplotlib is imported inside the functions below: it is slow to import, and only rendering needs it
SVG_RC: dict[RcKeyType, Any] = {
    "svg.hashsalt": "tru",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
}
BLUE, ORANGE, GREY, RED, GREEN = "#1f5f9f", "#d9822b", "#9aa5b1", "#c0392b", "#2e7d32"
WIDTH = 6.6  # inches: the text width of an A4 page with the report's margins


def _figure(height: float, width: float = WIDTH):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _uri(fig) -> str:
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context(SVG_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _render(draw, height: float, width: float = WIDTH) -> str:
    import matplotlib

    with matplotlib.rc_context(SVG_RC):
        fig = _figure(height, width)
        draw(fig)
        return _uri(fig)


def _epoch_axis(ax, epochs: list[int]) -> None:
    ax.set_xlabel("epoch of the reverse–repair loop")
    ax.set_xticks(epochs)
    ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)


def energy_heat_map(modules: list[dict]) -> str | None:
    """Deletion heat map: forget/retain gradient-energy ratio per module, strongest first."""
    rows = [m for m in modules if isinstance(m.get("ratio"), (int, float)) and m["ratio"] > 0]  # log-safe
    if not rows:
        return None
    rows = sorted(rows, key=lambda m: (-m["ratio"], m["name"]))

    def draw(fig):
        from matplotlib import colormaps
        from matplotlib.colors import LogNorm, Normalize

        ax = fig.add_subplot()
        names = [m["name"] for m in rows][::-1]
        ratios = [float(m["ratio"]) for m in rows][::-1]
        lo, hi = min(ratios), max(ratios)
        log = hi / lo > 20
        norm = LogNorm(lo, hi) if log and lo < hi else Normalize(lo, hi if hi > lo else lo + 1)
        colors = [colormaps["YlOrRd"](0.25 + 0.75 * norm(r)) for r in ratios]
        ax.barh(names, ratios, color=colors, edgecolor="#555555", linewidth=0.3)
        if log:
            from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

            ax.set_xscale("log")
            ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if lo / 1.5 <= t <= hi * 1.5]
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.axvline(1.0, color=GREY, linestyle="--", linewidth=0.8)
        ax.set_xlabel("forget / retain gradient energy per parameter (ratio, ×; above 1: the erased data weighs more)")
        ax.set_title("Deletion heat map: where the erased data's influence sits (before erasure)", loc="left")

    return _render(draw, 0.9 + 0.19 * len(rows))


def parameter_shift(modules: list[dict]) -> str | None:
    """Relative parameter shift per module, unlearned vs the retrain reference."""
    rows = [m for m in modules if isinstance(m.get("unlearned"), (int, float))]
    if not rows:
        return None

    def draw(fig):
        ax = fig.add_subplot()
        names = [m["module"] for m in rows][::-1]
        y = list(range(len(names)))
        un = [float(m["unlearned"]) for m in rows][::-1]
        re = [float(m["retrain"]) if isinstance(m.get("retrain"), (int, float)) else 0.0 for m in rows][::-1]
        has_re = any(isinstance(m.get("retrain"), (int, float)) for m in rows)
        h = 0.4 if has_re else 0.7
        ax.barh([v + (h / 2 if has_re else 0) for v in y], un, height=h, color=BLUE, label="unlearned (TRU)")
        if has_re:
            ax.barh([v - h / 2 for v in y], re, height=h, color=GREY, label="retrain (reference)")
        ax.set_yticks(y, names)
        for tick, m in zip(ax.get_yticklabels(), rows[::-1]):
            if m.get("flagged"):
                tick.set_color(RED)
                tick.set_fontweight("bold")
        ax.set_xlabel("relative parameter shift from the original model (‖Δθ‖ / ‖θ‖)")
        title = "Parameter shift per module"
        if any(m.get("flagged") for m in rows):
            title += " (red: flagged)"
        ax.set_title(title, loc="left")
        ax.legend(loc="lower right")

    return _render(draw, 0.9 + 0.22 * len(rows))


def branch_scales(epochs: list[dict]) -> str | None:
    """Learning-rate scale per branch over epochs."""
    rows = [e for e in epochs if isinstance(e.get("branch_scales"), dict)]
    if not rows:
        return None
    branches = sorted({b for e in rows for b in e["branch_scales"]})

    def draw(fig):
        ax = fig.add_subplot()
        xs = [int(e["epoch"]) for e in rows]
        markers = "osD^vP*X"
        for k, b in enumerate(branches):
            ax.plot(
                xs,
                [e["branch_scales"].get(b) for e in rows],
                marker=markers[k % len(markers)],
                markersize=4,
                linewidth=1.2,
                label=b,
            )
        ax.axhline(1.0, color=GREY, linestyle="--", linewidth=0.8)
        _epoch_axis(ax, xs)
        ax.set_ylabel("learning-rate scale (×)")
        ax.set_title("Branch-wise scaling of the reverse step", loc="left")
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), title="branch", title_fontsize=7)

    return _render(draw, 2.1)


def layer_selection(epochs: list[dict], modules: list[str]) -> str | None:
    """Selected modules per epoch (a filled cell = updated) and the share of parameters they hold."""
    rows = [e for e in epochs if isinstance(e.get("selected_modules"), list)]
    if not rows:
        return None
    names = list(modules) or sorted({m for e in rows for m in e["selected_modules"]})
    names += sorted({m for e in rows for m in e["selected_modules"]} - set(names))
    coverage = [e.get("capacity_covered") for e in rows]
    has_cov = any(isinstance(c, (int, float)) for c in coverage)

    def draw(fig):
        from matplotlib.colors import ListedColormap

        xs = [int(e["epoch"]) for e in rows]
        axes = (
            fig.subplots(2, 1, sharex=True, height_ratios=[max(len(names), 2), 2.2]) if has_cov else [fig.add_subplot()]
        )
        ax = axes[0]
        grid = [[1 if n in e["selected_modules"] else 0 for e in rows] for n in names]
        ax.imshow(
            grid,
            aspect="auto",
            cmap=ListedColormap(["#f1f3f5", BLUE]),
            vmin=0,
            vmax=1,
            interpolation="nearest",
            extent=(min(xs) - 0.5, max(xs) + 0.5, len(names) - 0.5, -0.5),
        )
        ax.set_yticks(range(len(names)), names)
        ax.set_xticks(xs)
        ax.set_xticks([x + 0.5 for x in xs[:-1]], minor=True)
        ax.set_yticks([y + 0.5 for y in range(len(names) - 1)], minor=True)
        ax.grid(which="minor", color="white", linewidth=1.0)
        ax.tick_params(which="minor", length=0)
        for side in ("top", "right"):
            ax.spines[side].set_visible(True)
        ax.set_title("Modules updated by the reverse step (blue: selected)", loc="left")
        if has_cov:
            cx = axes[1]
            pcts = [100 * c if isinstance(c, (int, float)) else None for c in coverage]
            cx.plot(xs, pcts, marker="o", markersize=4, color=ORANGE)
            for x, v in zip(xs, pcts):
                if v is not None:
                    cx.annotate(
                        f"{v:.0f}%", (x, v), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=6.5
                    )
            cx.set_ylabel("params (%)")
            cx.set_ylim(0, 105)
            _epoch_axis(cx, xs)
        else:
            _epoch_axis(ax, xs)

    return _render(draw, 0.8 + 0.17 * len(names) + (0.9 if has_cov else 0))


def gate_activity(epochs: list[dict]) -> str | None:
    """Forget pairs still in the top-k per epoch (the ranking gate acts on them)."""
    rows = [
        e
        for e in epochs
        if isinstance(e.get("gate"), dict) and isinstance(e["gate"].get("pairs_in_top_k"), (int, float))
    ]
    if not rows:
        return None

    def draw(fig):
        ax = fig.add_subplot()
        xs = [int(e["epoch"]) for e in rows]
        total = [e["gate"].get("pairs") or 0 for e in rows]
        active = [e["gate"]["pairs_in_top_k"] for e in rows]
        ax.bar(xs, total, width=0.7, color="#e3e7eb", label="forget pairs seen by the gate")
        ax.bar(xs, active, width=0.7, color=ORANGE, label="still in the top-k (gate active)")
        for x, a, t in zip(xs, active, total):
            ax.annotate(
                f"{a}" + (f" ({100 * a / t:.0f}%)" if t else ""),
                (x, a),
                textcoords="offset points",
                xytext=(0, 2),
                ha="center",
                fontsize=6.5,
            )
        _epoch_axis(ax, xs)
        ax.set_ylabel("forget pairs (count)")
        ax.set_ylim(0, max(total + active + [1]) * 1.35)
        ax.set_title("Ranking gate: erased pairs the model still ranks in its top-k", loc="left")
        ax.legend(loc="upper right", ncol=2)

    return _render(draw, 2.0)
