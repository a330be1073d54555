"""`tru evidence`: verify a batch's hashes, find a request's evidence."""

from __future__ import annotations

from pathlib import Path

import typer

from tru.cli.common import stage

app = typer.Typer(help="Compliance evidence: verify a batch's hashes, find a request's PDF.", no_args_is_help=True)


@app.command("verify")
@stage
def evidence_verify(
    batch: str | None = typer.Option(
        None, "--batch", "-b", help="the batch id (see `tru status` or batches.yaml); default: every registered batch"
    ),
) -> None:
    """Recompute every hash in reports/B/manifest.json (and the PDF's); name what changed.

    Without `--batch`, every batch in batches.yaml is checked; exit status 1 names each batch
    that failed."""
    from tru.evidence import verify, verify_all

    if batch is not None:
        problems = verify(batch, Path("."))
        if problems:
            for p in problems:
                typer.echo(p, err=True)
            raise typer.Exit(1)
        typer.echo(f"batch {batch}: every artifact matches its recorded sha256")
        return
    results = verify_all(Path("."))
    if not results:
        typer.echo("no batch registered in batches.yaml: nothing to verify")
        return
    failed = [b for b, problems in results.items() if problems]
    for b, problems in results.items():
        if problems:
            for p in problems:
                typer.echo(f"batch {b}: {p}", err=True)
        else:
            typer.echo(f"batch {b}: every artifact matches its recorded sha256")
    if failed:
        typer.echo(f"{len(failed)} of {len(results)} batch(es) failed verification: {', '.join(failed)}", err=True)
        raise typer.Exit(1)
    typer.echo(f"all {len(results)} batch(es) verified")


@app.command("get")
@stage
def evidence_get(request_id: str = typer.Argument(..., help="the request_id as submitted")) -> None:
    """Which batch erased a request, its status, and the evidence PDF's path."""
    from tru.evidence import get_request

    r = get_request(request_id, Path("."))
    typer.echo(f"request {request_id}: batch {r['batch']}, {r['kind']}, status {r['status']}")
    typer.echo(f"evidence: {r['pdf']}" + ("" if r["pdf_exists"] else " (not rendered yet: run `dvc repro`)"))
