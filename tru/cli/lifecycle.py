"""The data lifecycle around an erasure: `scan`, where the erased subjects' data still lives
(tru/lifecycle/)."""

from __future__ import annotations

from pathlib import Path

import typer

from tru.cli.common import ParamsOpt, load, stage

PANEL = "Data lifecycle"
app = typer.Typer()


@app.command(rich_help_panel=PANEL)
@stage
def scan(
    batch: list[str] | None = typer.Option(
        None,
        "--batch",
        "-b",
        metavar="B",
        help="a batch whose subjects to look for: its requests in the ledger, except the rejected ones (repeatable)",
    ),
    subjects: Path | None = typer.Option(
        None,
        "--subjects",
        metavar="FILE",
        help="subjects by raw id: a CSV, JSON Lines or Parquet file with the columns of a request file "
        "(kind, user_id, item_id; kind may be left empty)",
    ),
    out: Path | None = typer.Option(
        None, "--out", metavar="FILE", help="write the JSON report here (counts, paths and hashes; never an id)"
    ),
    cache: bool = typer.Option(True, help="scan the DVC cache"),
    remotes: bool = typer.Option(True, help="scan the DVC remotes that are local folders"),
    every: int = typer.Option(1000, help="without a terminal, a progress line every this many files (stderr)"),
    params: Path = ParamsOpt,
) -> None:
    """Find where the subjects of erasure requests still live: every file of the work tree, every
    object of the DVC cache and of each local DVC remote (Parquet, CSV/TSV/.inter, JSON and JSON
    Lines, .npy, safetensors and zip are decoded), and which checkpoints were trained on them (from
    the lineage they record). The ledger (data/ledger/) keeps raw ids by design and is reported
    apart, as the record of requests; a remote that is not a local folder is listed as not
    scanned. Prints a summary per location (counts only, never an id); `--out` writes the full
    JSON report.

    Exit status: 0 when nothing outside the ledger holds the subjects, 6 when something does
    (models an approximate method erased them from are listed, not counted), 2 for bad input (an
    unknown batch, an unreadable subjects file, a row without an id: nothing is written)."""
    from tru.errors import ConfigError
    from tru.io import write_json
    from tru.lifecycle.scan import (
        EXIT_FOUND,
        Subjects,
        resolve_indices,
        subjects_from_batches,
        subjects_from_file,
        summary_lines,
    )
    from tru.lifecycle.scan import scan as run_scan

    if not batch and subjects is None:
        raise ConfigError("name the subjects to look for: --batch B (repeatable) and/or --subjects FILE")
    if out is not None and out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; name the report file")
    p = load(params)
    found = Subjects()
    if batch:
        found.merge(subjects_from_batches(batch))
    if subjects is not None:
        found.merge(subjects_from_file(subjects))
    found.dataset = found.dataset or p.data.name
    resolve_indices(found, ".", p.data.dataset_dir)
    report = run_scan(
        found, ".", cache=cache, remotes=remotes, exclude=[out] if out else [], progress=True, every=every
    )
    if out is not None:
        write_json(out, report)
    for line in summary_lines(report):
        typer.echo(line)
    if out is not None:
        typer.echo(f"report: {out}")
    if report["holds_subjects"]:
        raise typer.Exit(EXIT_FOUND)
