"""The grid's report: the results summarised per setting and method (mean and spread over
seeds), README.md with the tables in the article's layout and the claim's verdicts, and the plots."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from tru.bench.grid.claims import claim_markdown, common_seed_rows, over_exact, over_exact_markdown, retrain_floors
from tru.bench.grid.methods import METHOD_ORDER, REFERENCE, RETRAINS
from tru.bench.grid.plots import plot_frontier, plot_over_exact, plot_time
from tru.bench.grid.spec import (
    COLUMNS,
    LABELS,
    Grid,
    expected_seconds,
    measured_seconds,
    minutes,
    pending,
    timings_path,
)
from tru.io import read_json


def summarise(rows: list[dict]) -> pd.DataFrame:
    """Mean and spread over seeds per (dataset, backbone, regime, method) of the grid's `rows`,
    with retain as a share of the original's, seconds as a share of the retrain's and
    `retrain_distance`, forget Recall@20's distance to the mean of the same seed's retrains
    (Retrain and its replicates) (each per seed, then averaged: a method that lands above the
    retrain on one deletion and below it on another is not near it on average): one row per
    group, `<metric>_mean`, `<metric>_std` and `seeds`."""
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    if df.empty:
        return df
    for c in COLUMNS[5:]:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    setting = ["dataset", "backbone", "regime", "seed"]
    orig = df[df.method == "original"].set_index(setting)["retain_recall@20"]
    ret = df[df.method == "retrain"].set_index(setting)["seconds"]
    reference = df[df.method.isin(RETRAINS)].groupby(setting)["forget_recall@20"].mean()
    idx = pd.MultiIndex.from_frame(df[setting])
    with np.errstate(divide="ignore", invalid="ignore"):  # a reference of 0 or missing: no share (NaN, shown as –)
        df["retain_pct_of_original"] = 100 * df["retain_recall@20"].to_numpy() / orig.reindex(idx).to_numpy()
        df["time_pct_of_retrain"] = 100 * df["seconds"].to_numpy() / ret.reindex(idx).to_numpy()
    df["retrain_distance"] = np.abs(df["forget_recall@20"].to_numpy() - reference.reindex(idx).to_numpy())
    df = df.replace([np.inf, -np.inf], np.nan)
    metrics = [
        "retain_recall@20",
        "retain_ndcg@20",
        "forget_recall@20",
        "forget_ndcg@20",
        "forget_real_recall@20",
        "forget_fake_recall@20",
        "served_exposure@20",
        "mia_balanced_accuracy",
        "backdoor_asr",
        "backdoor_lift",
        "seconds",
        "retain_pct_of_original",
        "time_pct_of_retrain",
        "retrain_distance",
    ]
    g = df.groupby(["dataset", "backbone", "regime", "method"], sort=False)[metrics]
    # the sample spread (ddof=1): the seeds are a sample of the deletions a night could bring
    mean, std = g.mean(), g.std(ddof=1)
    mean.columns = [f"{c}_mean" for c in mean.columns]
    std.columns = [f"{c}_std" for c in std.columns]
    out = mean.join(std).join(g.size().rename("seeds")).reset_index()
    return out


def _backbone(name: str) -> str:
    """A backbone's name as the report's headings write it."""
    return {"mgcn": "MGCN", "miggt": "MIG-GT"}.get(name, name)


def _cell(mean, std, digits: int, seeds: int) -> str:
    """A table cell: the mean (± the spread over seeds when there are several), "–" for NaN."""
    if mean is None or mean != mean:  # NaN
        return "–"
    if seeds > 1 and std == std:
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"{mean:.{digits}f}"


def _summary_cell(r, seeds: int, col: str, digits: int = 4) -> str:
    """The table cell of metric `col` in the summary row `r` (over `seeds` seeds)."""
    return _cell(r[f"{col}_mean"], r[f"{col}_std"], digits, seeds)


def shown_rows(rows: list[dict], grid: Grid | None) -> tuple[list[dict], set[tuple]]:
    """The rows the report's tables and claims rest on: per setting (dataset, backbone, regime),
    its evaluation seeds' rows once every method it has development rows for has evaluation
    rows too (a grid part-way through its evaluation seeds would otherwise drop methods from a
    table), else its development seeds' rows. Returns them and the settings shown from
    development seeds (`grid`: the seeds' roles; without it every seed is an evaluation seed)."""

    def role(r: dict) -> str:
        return "evaluation" if grid is None else grid.seed_role(r["dataset"], r["seed"])

    def setting(r: dict) -> tuple:
        return r["dataset"], r["backbone"], r["regime"]

    methods: dict[tuple, dict[str, set]] = {}
    for r in rows:
        methods.setdefault(setting(r), {"evaluation": set(), "development": set()})[role(r)].add(r["method"])
    evaluated = {k for k, v in methods.items() if v["evaluation"] and v["development"] <= v["evaluation"]}
    shown = [r for r in rows if (role(r) == "evaluation") == (setting(r) in evaluated)]
    return shown, {setting(r) for r in shown} - evaluated


def _seed_lines(grid: Grid | None) -> list[str]:
    """The report's statement of which seeds are evaluation and which development, per dataset."""
    if grid is None:
        return []

    def span(seeds: list[int]) -> str:
        return ", ".join(map(str, seeds)) or "none"

    lines = [
        "Seeds, per dataset: **evaluation** (the tables and the claims; no knob was ever tuned on them) and "
        "development (where knobs are tuned; a setting is shown from them until its evaluation seeds have "
        "a row for every method its development seeds have, and its heading says so):",
        "",
    ]
    for d, roles in grid.seeds_by_role().items():
        label = grid.datasets[d].label if d in grid.datasets else d
        lines.append(f"* {label}: evaluation {span(roles['evaluation'])}; development {span(roles['development'])}")
    return lines + [""]


def report_markdown(rows: list[dict], grid: Grid | None = None, parts: list[dict] | None = None) -> str:
    """The report (Markdown) of the grid's `rows`: the tables in the article's layout, one per
    (dataset, backbone, regime), methods as rows; Retain and Forget Recall@20/NDCG@20, then the
    audits and the cost; then the claim's section and the plots. `grid` names the datasets."""
    everything = rows
    rows, development = shown_rows(rows, grid)
    s = summarise(rows)
    lines = [
        "# The comparison grid",
        "",
        "Written by `tru bench grid` from `results.csv` (one row per cell; mean ± spread over seeds). "
        "Retain: retained users' test rows; Forget: the deleted interactions (docs: Audits and evidence). "
        "MIA: best membership attack's balanced accuracy (0.5 = chance). ASR: backdoor attack success rate "
        "(datasets with the canary, user-level); lift: ASR minus the top-20 share of items of the target's "
        "real popularity (0 = the backdoor is gone; tru/audit/canary.py). "
        "Time: erase + repair as a share of Retrain's. Popularity: the retained items' training counts, one "
        "ranking for every user (no model, so no attack and no time): where a user the model knows nothing "
        "about lands, the reference for a deleted user's forget R@20 besides Retrain's. Spreads are sample "
        "standard deviations over seeds (ddof=1). Where measured: user level with the canary, forget R@20 of "
        "the real deleted users and of the canary's fake users apart (the fakes can outnumber the real users); "
        "item level, co-item exposure@20, the mean number of the deleted items' closest co-occurring retained "
        "items (10 each, by shared users) in a retained user's top-20: what users are served, to read next "
        "to Retrain's (item-level forget R@20 ranks items nobody is served any more).",
        "",
        *_seed_lines(grid),
    ]
    if s.empty:
        return "\n".join(lines + ["No finished cells yet."]) + "\n"
    labels = {k: v.label for k, v in grid.datasets.items()} if grid else {}
    for (dataset, backbone, regime), sub in s.groupby(["dataset", "backbone", "regime"], sort=False):
        sub = sub.set_index("method")
        n = int(sub["seeds"].max())
        dev = (dataset, backbone, regime) in development
        # the columns only some settings have: user level with the canary, forget of the real
        # deleted users and of the fake ones apart; item level, what retained users are served
        split = sub["forget_real_recall@20_mean"].notna().any()
        served = sub["served_exposure@20_mean"].notna().any()
        extra_head = (" Forget R@20 real users | Forget R@20 fake users |" if split else "") + (
            " Co-item exposure@20 |" if served else ""
        )
        lines += [
            f"## {labels.get(dataset, dataset)} · {_backbone(backbone)} · "
            f"{regime}-level ({n} {'development ' if dev else ''}seed{'s' if n > 1 else ''})",
            "",
            "| Method | Retain R@20 | Retain N@20 | Forget R@20 | Forget N@20 |"
            + extra_head
            + " MIA BA | ASR | ASR lift | Retain % of Original | Time % of Retrain |",
            "|---|---|---|---|---|" + "---|" * (2 * split + served) + "---|---|---|---|---|",
        ]
        if dev:
            lines[-2:-2] = [
                "Development seeds only: knobs were tuned on these rows, so they are not evidence; the "
                "evaluation seeds' rows replace them once run.",
                "",
            ]
        for m in [m for m in METHOD_ORDER if m in sub.index] + [m for m in sub.index if m not in METHOD_ORDER]:
            r = sub.loc[m]
            k = int(r["seeds"])
            c = partial(_summary_cell, r, k)
            extra = (f" {c('forget_real_recall@20')} | {c('forget_fake_recall@20')} |" if split else "") + (
                f" {c('served_exposure@20', 3)} |" if served else ""
            )
            # a method that has run on fewer of the setting's seeds so far says so: its mean is not the others'
            fewer = f" ({k} of {n} seeds)" if k < n else ""
            lines.append(
                f"| {LABELS.get(m, m)}{fewer} | {c('retain_recall@20')} | {c('retain_ndcg@20')} | "
                f"{c('forget_recall@20')} | {c('forget_ndcg@20')} |{extra} {c('mia_balanced_accuracy', 3)} | "
                f"{c('backdoor_asr', 3)} | {c('backdoor_lift', 3)} | {c('retain_pct_of_original', 1)} | "
                f"{'–' if m in REFERENCE + RETRAINS else c('time_pct_of_retrain', 1)} |"
            )
        lines.append("")
    floors = retrain_floors(rows)
    # the claim compares means, so only over the seeds every compared method has run
    by_setting = s.groupby(["dataset", "backbone", "regime"], sort=False)["seeds"].max()
    table_seeds = {k: int(v) for k, v in by_setting.items()}
    common = common_seed_rows(rows)
    lines += claim_markdown(summarise(common), labels, development, floors, table_seeds, common)
    lines += over_exact_markdown(rows, labels, development, floors)
    lines += ["![retain vs forget](results_frontier.png)", "", "![time vs retrain](results_time.png)", ""]
    lines += pending_markdown(everything, grid)
    lines += parts_markdown(parts or [])
    return "\n".join(lines)


def pending_markdown(rows: list[dict], grid: Grid | None) -> list[str]:
    """The report's "Cells not run yet": the cells of `grid` without a row in `rows`, one line per
    dataset, backbone, method and seed role (seeds missing different regimes apart), with what
    they are expected to take (spec.expected_seconds) and the `--only` filter that runs them;
    no lines without a grid or with every cell run. Says why a table lacks a method."""
    todo = pending(grid, rows) if grid is not None else []
    if grid is None or not todo:
        return []
    measured = measured_seconds(rows)
    groups: dict[tuple, dict[int, list[str]]] = {}
    for d, bb, r, seed, m in todo:
        groups.setdefault((d, bb, m, grid.seed_role(d, seed)), {}).setdefault(int(seed), []).append(r)
    lines = [
        "## Cells not run yet",
        "",
        f"The grid file names {len(grid.cells())} cells; {len(todo)} have no row yet. A table above leaves out a "
        "method with no row on the seeds it shows, and marks one that ran on fewer of them. Per dataset, "
        "backbone and method: the seeds and regimes left, what their cells are expected to take (the median "
        "seconds of the same dataset, backbone, regime and method on the seeds that ran; a Retrain replicate "
        "or an ablation never measured at its method's), and the filter that runs them: "
        "`tru bench grid --only '<filter>'`. Cell seconds only: preparing a dataset, its base models and "
        "UltraRE's shard ensembles come on top, and the times were measured on the hosts the parts below "
        "name.",
        "",
        "| Setting | Method | Seeds | Regimes | Cells | Expected | Filter |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {k: v.label for k, v in grid.datasets.items()}
    for (d, bb, m, role), by_seed in groups.items():
        same: dict[tuple[str, ...], list[int]] = {}  # seeds missing the same regimes share a line
        for seed, missing in by_seed.items():
            same.setdefault(tuple(missing), []).append(seed)
        for regimes, seeds in same.items():
            cells = [(d, bb, r, seed, m) for seed in seeds for r in regimes]
            known = [x for x in (expected_seconds(c, measured)[0] for c in cells) if x is not None]
            expected = f"about {minutes(sum(known))}" if known else "never measured"
            if known and len(known) < len(cells):
                expected += f" ({len(cells) - len(known)} never measured)"
            only = f"dataset={d},backbone={bb},regime={'+'.join(regimes)},seed={'+'.join(map(str, seeds))},method={m}"
            lines.append(
                f"| {labels.get(d, d)} · {_backbone(bb)} | {LABELS.get(m, m)} | "
                f"{role} {', '.join(map(str, seeds))} | {', '.join(regimes)} | {len(cells)} | {expected} | `{only}` |"
            )
    return lines + [""]


def parts_markdown(parts: list[dict]) -> list[str]:
    """The report's "How long each part took" (the grid's timings file: one entry per run that
    ran cells, in order; an entry's optional `note`, written by hand into the file, says what a
    bare wall time cannot, e.g. that the part ran beside other jobs); no lines without any."""
    if not parts:
        return []
    lines = [
        "## How long each part took",
        "",
        "Each run of `tru bench grid` that ran cells, in order: its `--only` filter, the cells it ran, the "
        "wall time running them (their evaluation and UltraRE's shard ensembles included), the time before "
        "them preparing datasets and base models (once per host; near 0 where it had them already), the "
        "training threads and the host's CPU; – where a part predates that record. A part run beside "
        "other jobs takes longer, and wall times compare only on the same kind of CPU. Runs before this "
        "record existed are not listed.",
        "",
        "| part | cells | wall time | preparing | threads | host | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in parts:
        prep = f"{p['prepare_seconds'] / 60:.1f} min" if "prepare_seconds" in p else "–"
        lines.append(
            f"| `{p['part']}` | {p['cells']} | {p['seconds'] / 60:.1f} min | {prep} | {p.get('threads', '–')} "
            f"| {p.get('host', '–')} | {p.get('note', '')} |"
        )
    return lines + [""]


def write_report(rows: list[dict], grid: Grid | None, folder: str | Path) -> None:
    """Write the report of the grid's `rows` to `folder`: README.md (with how long each part took,
    from the grid's timings file) and, with rows, the plots (retain vs forget and time, over the
    seeds every compared method has run; what TRU adds over the exact step, paired by seed, where
    a setting has that baseline)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    timings = timings_path(grid.out) if grid else None
    parts = read_json(timings) if timings and timings.is_file() else []
    (folder / "README.md").write_text(report_markdown(rows, grid, parts))
    shown = shown_rows(rows, grid)[0]
    # the plots set methods' means side by side: over the seeds every compared method has run, as the claim
    s = summarise(common_seed_rows(shown))
    if not s.empty:
        plot_frontier(s, folder / "results_frontier.png")
        plot_time(s, folder / "results_time.png")
    found = over_exact(shown, retrain_floors(shown))
    if found:
        plot_over_exact(found, folder / "results_over_exact.png")
