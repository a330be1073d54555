"""`tru bench cost`: how an erasure's cost grows with the batch and with the dataset (docs:
Benchmarks).

The goal is a cost that grows with the deletion, not with the dataset. Per dataset of the grid
file (its prepared split and base model, as `tru bench grid` builds them) and per batch size,
`n` real users are drawn with the seed and erased by each method (the method, then its final
repair, as the grid times them), each cell in a fresh child process so that its peak memory is
its own. A row records the seconds, the child's peak resident memory and its resident memory
before the erasure (the data and the model loaded), and the dataset's size. Batch sizes above a
dataset's real users are not run (the report says so). Each cell is written when done, so a
killed run resumes after its last cell; the table and the plot are generated from the CSV.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from tru.bench.markdown import section
from tru.bench.store import ResultsStore
from tru.config import Params, with_backbone
from tru.errors import ConfigError

KEY = ("dataset", "backbone", "method", "users", "seed")


def _line(row: dict) -> str:
    return (
        f"  {row['dataset']} {row['backbone']} {row['method']}: {row['users']} user(s), "
        f"{row['seconds']:.1f} s, peak {row['peak_rss_mb']:.0f} MB ({row['loaded_rss_mb']:.0f} MB loaded)"
    )


def cost_store(out: str | Path) -> ResultsStore:
    return ResultsStore(Path(out), KEY, _line)


def cost_cell(params_json: str, split_dir: str, checkpoint: str, n_users: int, method: str, seed: int) -> dict:
    """One cell, in the process that runs it (a fresh child: its peak memory is the cell's)."""
    from tru.bench.process import peak_rss_mb
    from tru.bench.unlearn import erase_variant, regime_context

    params = Params.model_validate_json(params_json)
    ctx = regime_context(params, "user", seed, split_dir, checkpoint, n_users=n_users)
    loaded = peak_rss_mb()
    t0 = time.perf_counter()
    run = erase_variant(params, ctx, method)
    wall = time.perf_counter() - t0
    prior = ctx.prior
    return {
        "users_erased": int(len(ctx.new_users)),
        "forget_pairs": int(len(ctx.forget)),
        "seconds": round(float(run["seconds"]), 3),
        "wall_seconds": round(wall, 3),
        "epochs": int(run.get("epochs", 0)),
        "peak_rss_mb": round(peak_rss_mb()),
        "loaded_rss_mb": round(loaded),
        "dataset_users": int(prior.n_users),
        "dataset_items": int(prior.n_items),
        "train_pairs": int(len(prior.train)),
        "threads": int(params.train.threads),
    }


def real_users(split_dir: str | Path) -> int:
    """The users of a split's training pairs who are not the canary's fake accounts."""
    from tru.audit.canary import load as load_canary
    from tru.data.dataset import load_split

    train = load_split(split_dir).train
    fake = np.asarray((load_canary(split_dir) or {}).get("fake_users", []), np.int64)
    return int(len(np.setdiff1d(np.unique(train[:, 0]), fake)))


def run_cost_bench(
    params: Params,
    out: str | Path,
    grid_file: str | Path,
    datasets: list[str],
    backbones: list[str],
    sizes: list[int],
    methods: list[str],
    seed: int = 1,
    echo=print,
) -> list[dict]:
    """Every cell not yet in the CSV at `out` (module docstring); then the report beside it."""
    from tru.bench.grid.run import base_checkpoint, prepare_dataset
    from tru.bench.grid.spec import load_grid
    from tru.bench.process import in_child
    from tru.bench.unlearn import VARIANTS

    grid = load_grid(grid_file)
    unknown = sorted(set(datasets) - set(grid.datasets))
    if unknown:
        raise ConfigError(f"--datasets: {unknown} not in {grid_file}; choose from {', '.join(grid.datasets)}")
    bad = sorted(set(methods) - set(VARIANTS))
    if bad:
        raise ConfigError(f"--methods: unknown {bad}; choose from {', '.join(VARIANTS)}")
    if not sizes or min(sizes) < 1:
        raise ConfigError("--sizes: batch sizes must be at least 1 user")
    out = Path(out)
    store = cost_store(out)
    done = store.read()
    finished = store.finished(done)
    for name in datasets:
        spec = grid.datasets[name]
        p, split = prepare_dataset(params, name, spec, grid.root)
        available = real_users(split)
        for backbone in backbones:
            pb = with_backbone(p, backbone)
            checkpoint = base_checkpoint(pb, name, spec, split, grid.root, params.model.backbone)
            for n in sizes:
                if n > available:
                    echo(f"  {name}: {n} users is more than its {available} real users; not run")
                    continue
                for method in methods:
                    if (name, backbone, method, n, seed) in finished:
                        continue
                    cell = in_child(cost_cell, pb.model_dump_json(), str(split), str(checkpoint), n, method, seed)
                    store.record(
                        done,
                        {"dataset": name, "backbone": backbone, "method": method, "users": n, "seed": seed} | cell,
                    )
    write_cost_report(done, out, grid)
    return done


def write_cost_report(rows: list[dict], out: Path, grid=None) -> Path:
    """The README section (`out` with .md) and the plot (`out` with .png) from the CSV rows."""
    md = out.with_suffix(".md")
    lines = ["# How the erasure's cost grows (generated by `tru bench cost`)", ""]
    df = pd.DataFrame(rows)
    if df.empty:
        md.write_text("\n".join(lines + ["No cell has been run yet.", ""]))
        return md
    sizes = sorted(df["users"].unique())
    lines += [
        "Seconds of the erasure (the method and its final repair) and the process's peak resident memory, "
        "per batch of erased users; *loaded* is the memory with the data and the model loaded, before the "
        "erasure. A cost that grows with the deletion and not with the dataset keeps a row flat across "
        "datasets for the same batch size. A dash: the dataset has fewer real users than the batch. "
        "*Threads*: the torch threads the cells ran with (params.yaml's train.threads).",
        "",
    ]
    table = [
        "| dataset (users / items / training pairs) | backbone | method | threads | "
        + " | ".join(f"{n} user{'s' if n > 1 else ''}: s (peak MB)" for n in sizes)
        + " | loaded MB |",
        "|---|---|---|---|" + "---|" * len(sizes) + "---|",
    ]
    for (dataset, backbone, method), g in _rows_in_order(df):
        by = g.set_index("users")
        first = g.iloc[0]
        label = _label(dataset, grid)
        cells = [
            f"{by.loc[n, 'seconds']:.1f} ({by.loc[n, 'peak_rss_mb']:.0f})" if n in by.index else "–" for n in sizes
        ]
        table.append(
            f"| {label} ({first['dataset_users']:,} / {first['dataset_items']:,} / {first['train_pairs']:,}) "
            f"| {backbone} | {method} | {_threads(g)} | "
            + " | ".join(cells)
            + f" | {g['loaded_rss_mb'].median():.0f} |"
        )
    lines += section("table", table)
    lines += ["", "The training pairs each batch of users held (what the erasure removes):", ""]
    lines += section("pairs", pair_lines(df, sizes, grid))
    lines += ["", f"![cost by batch size]({out.with_suffix('.png').name})", ""]
    md.write_text("\n".join(lines))
    _plot(df, out.with_suffix(".png"))
    return md


def _rows_in_order(df: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """The table's rows, one per dataset, backbone and method: datasets from the fewest training
    pairs to the most, then backbones by name, then methods in the order they were first run (the
    CSV's order alone depends on which runs were resumed)."""
    pairs = df.groupby("dataset", sort=False)["train_pairs"].max()
    first = {m: i for i, m in enumerate(dict.fromkeys(df["method"]))}
    groups = list(df.groupby(["dataset", "backbone", "method"], sort=False))
    return sorted(groups, key=lambda kv: (pairs[kv[0][0]], kv[0][0], kv[0][1], first[kv[0][2]]))


def _label(dataset: str, grid=None) -> str:
    """The dataset's label in the grid file (its name where the grid does not know it)."""
    return grid.datasets[dataset].label if grid is not None and dataset in grid.datasets else dataset


def pair_lines(df: pd.DataFrame, sizes: list, grid=None) -> list[str]:
    """Per dataset, the training pairs its batches of users held (the same users for every
    method), and the largest batch's share of the dataset's training pairs."""
    out = []
    for dataset, g in df.groupby("dataset", sort=False):
        label = _label(dataset, grid)
        by = g.groupby("users")["forget_pairs"].max()
        got = [n for n in sizes if n in by.index]
        if not got:
            continue
        counts = ", ".join(f"{int(by[n]):,}" for n in got)
        share = by[got[-1]] / g["train_pairs"].iloc[0]
        out.append(
            f"* {label}: {', '.join(f'{n:,}' for n in got)} users held {counts} training pairs "
            f"({share:.0%} of the dataset's at {got[-1]:,} users)"
        )
    return out


def _threads(g: pd.DataFrame) -> str:
    """The threads a row's cells ran with ("?" for cells recorded before the column existed)."""
    if "threads" not in g or g["threads"].isna().all():
        return "?"
    return ", ".join(str(int(t)) for t in sorted(g["threads"].dropna().unique()))


def _plot(df: pd.DataFrame, path: Path) -> None:
    from tru.bench.process import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    # one colour per dataset and backbone, one line style per method: TRU solid, the others dashed
    groups = _rows_in_order(df)
    colour = {key: f"C{i}" for i, key in enumerate(dict.fromkeys((d, b) for (d, b, _), _ in groups))}
    others = list(dict.fromkeys(m for (_, _, m), _ in groups if m != "tru"))
    for (dataset, backbone, method), g in groups:
        g = g.sort_values("users")
        style = "-" if method == "tru" else ("--", ":", "-.")[others.index(method) % 3]
        look = {"marker": "o", "color": colour[dataset, backbone], "linestyle": style}
        label = f"{method}, {dataset} ({backbone})"
        axes[0].plot(g["users"], g["seconds"], label=label, **look)
        axes[1].plot(g["users"], g["peak_rss_mb"] - g["loaded_rss_mb"], label=label, **look)
    titles = ("erasure seconds (method + final repair)", "peak memory above the loaded data and model (MB)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("users erased in the batch")
        ax.set_title(title, fontsize=9)
    axes[0].set_yscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(0.82, 0.5), frameon=False, handlelength=3
    )
    fig.tight_layout(rect=(0, 0, 0.82, 1))
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
