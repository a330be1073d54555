"""`tru bench`: the benchmarks (results under reports/bench/). `--runner thread|dask` hands the
cells to a Prefect task runner from flows/bench.py: the CLI is the floor that may start flows."""

from __future__ import annotations

from pathlib import Path

import typer

from tru import paths
from tru.bench.grid.methods import UNLEARN_METHODS
from tru.cli.common import ParamsOpt, comma_list, load, print_json, stage
from tru.errors import ConfigError, TruError

app = typer.Typer(help="Benchmarks (results under reports/bench/).", no_args_is_help=True)

RunnerOpt = typer.Option(
    "none",
    help="none: cells one after another; thread or dask: cells as Prefect tasks on "
    "that task runner (dask: in parallel)",
)
WorkersOpt = typer.Option(2, help="parallel cells with --runner thread|dask")
BackboneOpt = typer.Option(None, help="mgcn or miggt (default: model.backbone)")


def _with_backbone(p, backbone: str):
    from tru.config import with_backbone

    try:
        return with_backbone(p, backbone)
    except ValueError as err:
        raise TruError(f"--backbone {backbone}: {err}") from None


@app.command("train")
@stage
def bench_train_cmd(
    params: Path = ParamsOpt,
    out: Path = typer.Option(paths.BENCH_REPORTS / "train_ml100k.json"),
    seeds: str = typer.Option("2026,2027,2028", help="comma-separated seeds"),
    baby_epoch: bool = typer.Option(True, help="also time one epoch at Amazon-Baby synthetic scale"),
    backbone: str | None = BackboneOpt,
) -> None:
    """Training benchmark on the default dataset: seconds/epoch, epochs, RSS, Recall/NDCG vs popularity.
    One entry per backbone in the output file: benchmarking one keeps the others' figures."""
    from tru.bench.train import bench_train

    p = load(params)
    if backbone:
        p = _with_backbone(p, backbone)
    result = bench_train(p, out, [int(s) for s in comma_list(seeds)], baby_epoch)
    print_json(result["summary"])


@app.command("ingest")
@stage
def bench_ingest_cmd(
    out: Path = typer.Option(paths.BENCH_REPORTS / "ingest_1m.json"),
    rows: int = typer.Option(1_000_000, help="requests to generate and ingest"),
) -> None:
    """Ingest a generated request file (default 1,000,000 rows): seconds and peak RSS."""
    from tru.bench.ingest import bench_ingest

    print_json(bench_ingest(out, rows))


@app.command("unlearn")
@stage
def bench_unlearn_cmd(
    params: Path = ParamsOpt,
    out: Path = typer.Option(paths.BENCH_REPORTS / "unlearn_movielens100k.csv"),
    seeds: str = typer.Option("1,2,3"),
    regimes: str = typer.Option("user,item,interaction"),
    methods: str = typer.Option(",".join(UNLEARN_METHODS)),
    backbone: str | None = BackboneOpt,
    runner: str = RunnerOpt,
    workers: int = WorkersOpt,
) -> None:
    """Unlearning benchmark on the default dataset (resumable; one CSV row per cell) + plot.

    Another backbone than the pipeline's trains its own base model once (same split and seed)
    under data/bench/base-<backbone>/."""
    from tru.bench.unlearn import bench_base_model, bench_unlearn

    p = load(params)
    checkpoint = str(paths.BASE_MODEL)
    if backbone and backbone != p.model.backbone:
        p = _with_backbone(p, backbone)
        checkpoint = bench_base_model(p)
    run_cells = None
    if runner != "none":
        from flows.bench import grid_runner

        run_cells = grid_runner(runner, workers)
    bench_unlearn(
        p, out, [int(x) for x in comma_list(seeds)], comma_list(regimes), comma_list(methods), checkpoint, run_cells
    )


@app.command("nightly")
@stage
def bench_nightly_cmd(
    params: Path = ParamsOpt, out: Path = typer.Option(paths.BENCH_REPORTS / "nightly_ml100k.json")
) -> None:
    """One nightly erasure (the demo batch) from inbox to PDF through the Prefect flow, split by
    step, against retraining; in a scratch copy of the project (nothing here changes)."""
    from flows.bench import bench_nightly

    r = bench_nightly(params, out)
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in r["steps_seconds"].items())
    typer.echo(
        f"inbox -> PDF {r['wall_seconds_inbox_to_pdf']:.1f} s ({steps}; DVC {r['dvc_seconds']:.1f} s, "
        f"Prefect {r['prefect_overhead_seconds']:.1f} s); retrain {r['retrain_seconds']:.1f} s -> {out}"
    )


@app.command("audit")
@stage
def bench_audit_cmd(
    params: Path = ParamsOpt,
    out: Path = typer.Option(paths.BENCH_REPORTS / "audit_movielens100k.csv"),
    seeds: str = typer.Option(
        "11,12,13", help="comma-separated deletion seeds (default: ML-100k's evaluation seeds, never tuned on)"
    ),
    methods: str = typer.Option("original,retrain,reverse_repair,tru"),
    references: int = typer.Option(
        2, min=0, help="exact retrains per seed (other training seeds) for the reference-model attack; 0: off"
    ),
) -> None:
    """Audit benchmark: user-level 5% + the backdoor canary on ML-100k; per method the membership
    attacks (one model's scores, and offline LiRA against reference retrains: TPR at 1% and 0.1%
    FPR) and the backdoor. Rows already in the CSV are kept (a row without the LiRA columns was
    measured before it existed)."""
    from tru.bench.audit import bench_audit

    bench_audit(load(params), out, [int(x) for x in comma_list(seeds)], comma_list(methods), references)


@app.command("gate")
@stage
def bench_gate_cmd(
    params: Path = ParamsOpt,
    out: Path = typer.Option(paths.BENCH_REPORTS / "gate_movielens100k.csv"),
    backbones: str = typer.Option("mgcn,miggt", help="comma-separated backbones"),
    regimes: str = typer.Option("user,item,interaction", help="comma-separated deletion regimes"),
    canaries: str = typer.Option("warm,cold", "--canary", help="canary variants (cold: user regime only)"),
    seeds: str = typer.Option("1,2,3", help="comma-separated seeds"),
    methods: str = typer.Option("tru", help="approximate methods judged beside retrain and original"),
) -> None:
    """The audit gate's false alarms and misses on ML-100k: per cell it judges an exact retrain
    (must pass), the untouched original (must fail) and each method; resumable, one CSV row per
    model, the table in gate_movielens100k.md."""
    from tru.bench.gate import run_gate_bench

    rows = run_gate_bench(
        load(params),
        out,
        comma_list(backbones),
        comma_list(regimes),
        comma_list(canaries),
        [int(s) for s in comma_list(seeds)],
        comma_list(methods),
    )
    typer.echo(f"{len(rows)} row(s) in {out}; table in {out.with_suffix('.md')}")


@app.command("stream")
@stage
def bench_stream_cmd(
    params: Path = ParamsOpt,
    dataset: str | None = typer.Option(
        None,
        help="a dataset of the grid file (ml1m: prepared and its base model trained first, as the grid does); "
        "default: the pipeline's own (params' data.name, ml100k)",
    ),
    grid: Path = typer.Option(paths.BENCH_REPORTS / "grid.yaml", help="the grid file naming the datasets"),
    out: Path | None = typer.Option(
        None, help="the CSV (default: reports/bench/stream_<dataset>.csv, e.g. stream_movielens100k.csv)"
    ),
    backbones: str = typer.Option("mgcn", help="comma-separated backbones"),
    methods: str = typer.Option("tru,exact", help="comma-separated unlearning methods, one chain each"),
    seeds: str = typer.Option(
        "11", help="comma-separated traffic seeds (evaluation: 11, 12, 13; development, where rules were chosen: 1-3)"
    ),
    nights: int = typer.Option(30, help="nights per stream"),
    every: int = typer.Option(5, help="an exact retrain as the reference every this many nights (and the last)"),
    canary_night: int = typer.Option(12, help="the night the canary's fake accounts are erased"),
    replicate: bool = typer.Option(
        True,
        "--replicate/--no-replicate",
        help="on checkpoint nights, a second retrain with another training seed (Retrain's noise floor, which "
        "judges each chain); with it on, rows recorded without it get it where a stream kept the night",
    ),
    report_only: bool = typer.Option(
        False, "--report-only", help="rewrite the report from the CSV and exit (distances filled from kept models)"
    ),
) -> None:
    """Many nights in a row: each night's deletions through the batch stages from the model the
    night before left, and every few nights an exact retrain on the same retained data as the
    reference (drift, gate false alarms, cost). Resumable night by night; the table in the
    CSV's .md (stream_movielens100k.md on ML-100k), the drift plot beside it. Run it in a
    project after `make run`'s base stages (on ML-100k it reads data/split and the base model;
    another dataset is prepared and its base model trained under the grid's root, as `tru
    bench grid` does; its chains live under data/bench/stream/)."""
    from tru.bench.stream import grid_dataset, refresh_report, report_name, run_stream_bench, streams_root

    p = load(params)
    grid_root, spec = grid_dataset(p, grid, dataset)
    out = out or paths.BENCH_REPORTS / f"{report_name(spec.label)}.csv"
    if report_only:
        root = streams_root(paths.BENCH_SCRATCH / "stream", grid_root, dataset)
        typer.echo(f"wrote {refresh_report(p, out, root, spec.label)}")
        return
    rows = run_stream_bench(
        p,
        out,
        comma_list(backbones),
        comma_list(methods),
        [int(s) for s in comma_list(seeds)],
        nights,
        every,
        canary_night,
        replicate=replicate,
        echo=typer.echo,
        dataset=dataset,
        grid_file=grid,
    )
    typer.echo(f"{len(rows)} night(s) in {out}; table in {out.with_suffix('.md')}")


@app.command("cost")
@stage
def bench_cost_cmd(
    params: Path = ParamsOpt,
    grid: Path = typer.Option(paths.BENCH_REPORTS / "grid.yaml", help="the grid file naming the datasets"),
    out: Path = typer.Option(paths.BENCH_REPORTS / "cost.csv"),
    datasets: str = typer.Option("ml100k", help="comma-separated datasets of the grid file (ml100k, ml1m, baby)"),
    backbones: str = typer.Option("mgcn", help="comma-separated backbones"),
    sizes: str = typer.Option("1,10,100,1000", help="comma-separated batch sizes, in users"),
    methods: str = typer.Option("tru", help="comma-separated benchmark variants (tru, exact, retrain, ...)"),
    seed: int = typer.Option(1, help="the seed the users are drawn with"),
    report_only: bool = typer.Option(False, "--report-only", help="rewrite the table and plot from the CSV"),
) -> None:
    """How an erasure's cost grows with the batch (users erased) and with the dataset: seconds and
    peak memory per cell, each in a fresh process; resumable, the table in cost.md and the plot
    beside it. Datasets other than ml100k are prepared and their base models trained first, as
    `tru bench grid` does (long on ml1m and baby)."""
    from tru.bench.cost import cost_store, run_cost_bench, write_cost_report
    from tru.bench.grid.spec import load_grid

    if report_only:
        typer.echo(f"wrote {write_cost_report(cost_store(out).read(), Path(out), load_grid(grid))}")
        return
    rows = run_cost_bench(
        load(params),
        out,
        grid,
        comma_list(datasets),
        comma_list(backbones),
        [int(s) for s in comma_list(sizes)],
        comma_list(methods),
        seed,
        echo=typer.echo,
    )
    typer.echo(f"{len(rows)} cell(s) in {out}; table in {out.with_suffix('.md')}")


@app.command("sensitivity")
@stage
def bench_sensitivity_cmd(
    params: Path = ParamsOpt,
    grid: Path = typer.Option(
        paths.BENCH_REPORTS / "grid.yaml", help="the grid file: which seeds are development seeds"
    ),
    out: Path = typer.Option(paths.BENCH_REPORTS / "sensitivity_movielens100k.csv"),
    settings: str = typer.Option("mgcn:interaction,miggt:user", help="comma-separated backbone:regime settings"),
    seeds: str = typer.Option("1,2,3", help="comma-separated development seeds (evaluation seeds are refused)"),
    knobs: str = typer.Option(
        "capacity_rho,scale_gamma,gate_lambda,lr,max_epochs",
        help="comma-separated knobs, each moved alone; also refit_steps, refit_lr (the item re-fit)",
    ),
    report_only: bool = typer.Option(False, "--report-only", help="rewrite the table and plot from the CSV"),
) -> None:
    """TRU's knobs one at a time around their defaults on ML-100k development seeds: per setting
    and seed, the original, an exact retrain, TRU with the defaults and TRU with each other
    value of each knob; resumable, the table in sensitivity_movielens100k.md and one plot panel
    per knob beside it."""
    from tru.bench.sensitivity import run_sensitivity_bench, sensitivity_store, write_sensitivity_report

    if report_only:
        typer.echo(f"wrote {write_sensitivity_report(sensitivity_store(out).read(), out, load(params))}")
        return
    pairs = []
    for s in comma_list(settings):
        backbone, sep, regime = s.partition(":")
        if not sep:
            raise ConfigError(f"--settings {s!r}: expected backbone:regime, e.g. mgcn:interaction")
        pairs.append((backbone, regime))
    rows = run_sensitivity_bench(
        load(params), out, grid, pairs, [int(x) for x in comma_list(seeds)], comma_list(knobs), echo=typer.echo
    )
    typer.echo(f"{len(rows)} run(s) in {out}; table in {out.with_suffix('.md')}")


@app.command("lifecycle")
@stage
def bench_lifecycle_cmd(
    project: Path = typer.Option(..., help="a scratch clone after `make run`: it is consolidated and purged"),
    out: Path = typer.Option(paths.BENCH_REPORTS / "lifecycle_movielens100k.json"),
    results: Path = typer.Option(paths.BENCH_REPORTS / "results.csv", help="the grid's results (Retrain's range)"),
) -> None:
    """The data lifecycle timed on a project after `make run`: `tru consolidate` and `tru purge`
    (zero-day window), the scan before, between and after, and the consolidated model's test
    Recall@20 against the grid's exact retrains. Destructive for the project it is given."""
    from tru.bench.lifecycle import run_lifecycle_bench

    r = run_lifecycle_bench(project, out, results)
    typer.echo(
        f"consolidate {r['consolidate_seconds']} s, purge {r['purge_seconds']} s; "
        f"after the purge the scan finds the subjects: {r['scan']['after']['holds_subjects']} ({out})"
    )


@app.command("grid")
@stage
def bench_grid_cmd(
    grid: Path = typer.Option(paths.BENCH_REPORTS / "grid.yaml", help="the grid (YAML)"),
    params: Path = ParamsOpt,
    only: str = typer.Option(
        "",
        help="run part of the grid: column=value[+value],... over "
        "dataset, backbone, regime, seed, method (e.g. dataset=ml100k,seed=1)",
    ),
    runner: str = RunnerOpt,
    workers: int = WorkersOpt,
    report_only: bool = typer.Option(
        False, "--report-only", help="rewrite README.md and the plots from results.csv without running anything"
    ),
    list_only: bool = typer.Option(
        False, "--list", help="print the cells still to run (with --only: of that part) and exit"
    ),
) -> None:
    """The paper's comparison: every cell of the grid not yet in results.csv (resumable), then
    reports/bench/README.md with the tables and plots."""
    from tru.bench.grid.report import write_report
    from tru.bench.grid.run import run_grid
    from tru.bench.grid.spec import load_grid, parse_only, pending, pending_table, read_results

    g = load_grid(grid)
    if list_only:
        done = read_results(g.out)
        typer.echo(pending_table(pending(g, done, parse_only(only)), done))
        return
    if report_only:
        write_report(read_results(g.out), g, Path(g.out).parent)
        return
    run_cells = None
    if runner != "none":
        from flows.bench import grid_cells_runner

        run_cells = grid_cells_runner(runner, workers)
    run_grid(load(params), g, parse_only(only), run_cells)
