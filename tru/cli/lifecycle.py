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
        from tru.lifecycle.consolidate import read_generations

        archived = {b for g in read_generations() for b in g.get("batches") or []}
        if archived & set(batch):
            # ingest resolved their ids in a generation a consolidation ended: the data in service
            # is renumbered, so ids are resolved again through its maps
            found.user_index.clear()
            found.item_index.clear()
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


@app.command(rich_help_panel=PANEL)
@stage
def consolidate(
    dry_run: bool = typer.Option(False, "--dry-run", help="say what it would fold in, change nothing"),
    wait: float = typer.Option(0.0, help="seconds to wait for a running erasure run (0: exit at once)"),
    params: Path = ParamsOpt,
) -> None:
    """Retrain the base model exactly on the data without every erased subject, and make it the
    new base of the lineage: the erased requests of every batch since the last consolidation join
    the suppression list (lifecycle/suppression.tsv, keyed pseudonyms), the batches are archived
    (batches.yaml starts empty; their files stay until `tru purge`), and `dvc repro evaluate`
    fetches, featurizes and splits the data without them and trains the base model from scratch.
    The generation that ends is kept for `lifecycle.retention_days` (its dvc.lock is copied to
    lifecycle/locks/). A killed consolidation resumes when run again.

    Exit status: 0 (consolidated), 2 (no batch to consolidate, or one awaits review), 5 (another
    run holds the lock)."""
    from tru.lifecycle import consolidate as cons
    from tru.lifecycle.runs import consolidation_run

    p = load(params)
    if dry_run:
        plan = cons.plan()
        typer.echo(
            f"data generation {plan['generation']}; {len(plan['batches'])} batch(es) to fold into generation "
            f"{plan['next']}, {plan['new_subjects']} new subject(s) for the suppression list"
            + ("; an unfinished consolidation would resume" if plan["unfinished"] else "")
        )
        return
    entry = consolidation_run(p, echo=typer.echo, wait=wait)
    for note in entry["lineage"]["notes"]:
        typer.echo(f"lineage: {note}", err=True)


@app.command(rich_help_panel=PANEL)
@stage
def purge(
    dry_run: bool = typer.Option(False, "--dry-run", help="list what it would remove, change nothing"),
    scan: bool = typer.Option(
        True, help="also remove objects of the DVC cache and local remotes that the scan finds holding the subjects"
    ),
    wait: float = typer.Option(0.0, help="seconds to wait for a running erasure run (0: exit at once)"),
    params: Path = ParamsOpt,
) -> None:
    """Remove what held erased data once its retention window has closed: the data generation a
    consolidation ended (its data and base model, the archived batches' sets, checkpoints and
    request files) from the work tree, the DVC cache and every DVC remote that is a local
    folder, by object hash, never an object the data and model in service or a generation still
    in its window need. The archived batches' ledger files lose their raw ids and free-text
    reasons; a tombstone per object goes to lifecycle/tombstones.jsonl. A killed purge resumes
    from its plan (lifecycle/purge-plan.json) when run again.

    Exit status: 0 (purged, or nothing due), 5 (another run holds the lock)."""
    from datetime import UTC, datetime

    from tru.lifecycle import purge as pg
    from tru.lifecycle.consolidate import read_generations
    from tru.lifecycle.runs import purge_run

    p = load(params)
    now = datetime.now(UTC)
    if dry_run:
        gens = read_generations()
        closing = pg.due(gens, now)
        if not closing:
            typer.echo("nothing to purge: no retention window has closed")
            return
        preview = pg.make_plan(gens, now, Path("."))
        typer.echo(
            f"would purge data generation(s) {', '.join(map(str, preview['generations']))}: "
            f"{len(preview['objects'])} object(s), {len(preview['paths'])} folder(s), the raw ids of "
            f"{len(preview['ledgers'])} ledger file(s) ({preview['kept_in_use']} object(s) kept: in service)"
        )
        return
    plan = purge_run(p, echo=typer.echo, wait=wait, scan=scan, now=now)
    if plan is None:
        typer.echo("nothing to purge: no retention window has closed")
        return
    for r in plan["not_purged"]:
        typer.echo(f"not purged: remote {r['remote']} ({r['url']}) was not opened ({r['why']})", err=True)
    for md5, where in plan["left_on_remotes"].items():
        typer.echo(f"not purged: object {md5} stays on {', '.join(f'{k} ({v})' for k, v in where.items())}", err=True)
    for note in plan["lineage"]["notes"]:
        typer.echo(f"lineage: {note}", err=True)
