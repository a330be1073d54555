"""The membership gate's calibration (`tru bench mia-null`): how often chance alone fails the
membership check, per sample size; a CSV and its plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from tru.audit.mia import null_balanced_accuracy
from tru.config import Params

MIA_NULL_PAIRS = (4, 8, 16, 25, 50, 100, 200, 400)


def bench_mia_null(
    params: Params, out: str | Path, pairs: tuple[int, ...] = MIA_NULL_PAIRS, draws: int = 200
) -> list[dict]:
    """How often chance alone fails the membership check: per sample size (pairs per class),
    `draws` attacks on features without signal (tru.audit.mia.null_balanced_accuracy); the
    share above `audit.gate.max_mia_balanced_accuracy` is the gate's false refusals there.
    Writes one row per size to `out` (CSV) and the plot beside it (.png); returns the rows."""
    limit = params.audit.gate.max_mia_balanced_accuracy
    rows = []
    for n in tqdm(pairs, desc="mia-null", unit="size"):
        ba = null_balanced_accuracy(n, draws, params.seed)
        rows.append(
            {
                "pairs_per_class": n,
                "draws": draws,
                "mean": round(float(ba.mean()), 4),
                "p95": round(float(np.percentile(ba, 95)), 4),
                "p99": round(float(np.percentile(ba, 99)), 4),
                "max": round(float(ba.max()), 4),
                "threshold": limit,
                "false_refusal_rate": round(float((ba > limit).mean()), 4),
            }
        )
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
