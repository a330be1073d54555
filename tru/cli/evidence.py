"""`tru evidence`: verify a batch's hashes, find a request's evidence."""

from __future__ import annotations

from pathlib import Path

import typer

from tru.cli.common import BatchOpt, stage

app = typer.Typer(help="Compliance evidence: verify a batch's hashes, find a request's PDF.", no_args_is_help=True)


@app.command("verify")
@stage
def evidence_verify(batch: str = BatchOpt) -> None:
    """Recompute every hash in reports/B/manifest.json (and the PDF's); name what changed."""
    from tru.evidence import verify

    problems = verify(batch, Path("."))
    if problems:
        for p in problems:
            typer.echo(p, err=True)
        raise typer.Exit(1)
    typer.echo(f"batch {batch}: every artifact matches its recorded sha256")


@app.command("get")
@stage
def evidence_get(request_id: str = typer.Argument(..., help="the request_id as submitted")) -> None:
    """Which batch erased a request, its status, and the evidence PDF's path."""
    from tru.evidence import get_request

    r = get_request(request_id, Path("."))
    typer.echo(f"request {request_id}: batch {r['batch']}, {r['kind']}, status {r['status']}")
    typer.echo(f"evidence: {r['pdf']}" + ("" if r["pdf_exists"] else " (not rendered yet: run `dvc repro`)"))
