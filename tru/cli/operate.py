"""Running the pipeline: `nightly` (the erasure flow once), `serve` (its schedule), `status`,
`demo-requests`. These start Prefect flows: the CLI is the one floor above the orchestration."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from tru import paths
from tru.cli.common import BatchTimeOpt, ParamsOpt, load, stage

PANEL = "Operations"
app = typer.Typer()


@app.command(rich_help_panel=PANEL)
@stage
def nightly(
    params: Path = ParamsOpt,
    inbox: Path | None = typer.Option(None, help="inbox folder (default: data/deletions/inbox)"),
    wait: float = typer.Option(0.0, help="seconds to wait for a running erasure run (0: exit at once)"),
    batch_time: str | None = BatchTimeOpt,
) -> None:
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


@app.command(rich_help_panel=PANEL)
@stage
def serve(
    params: Path = ParamsOpt,
    cron: str = typer.Option("0 2 * * *", help="when the erasure runs (cron, five fields)"),
    timezone: str = typer.Option("UTC", help="the schedule's time zone (IANA name)"),
    runner: str = typer.Option("thread", help="task runner: thread, or dask (pip install -e '.[dask]')"),
    local_server: bool = typer.Option(False, help="start a local Prefect server (127.0.0.1, SQLite) first"),
    port: int = typer.Option(4200, help="port of the local server"),
) -> None:
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
            typer.echo(
                "note: PREFECT_API_URL is not set: serving against a temporary server (runs vanish on exit); "
                "`tru serve --local-server` (or `make serve`) starts a persistent local one",
                err=True,
            )
        serve_deployment(cron=cron, timezone=timezone, params_path=str(params), runner=runner)


@app.command(rich_help_panel=PANEL)
@stage
def status() -> None:
    """Where things stand: base-model metrics and, per deletion batch, requests and components."""
    from tru.status import status_lines

    for line in status_lines():
        typer.echo(line)


@app.command("demo-requests", rich_help_panel=PANEL)
@stage
def demo_requests_cmd(
    out: Path = typer.Argument(paths.INBOX / "demo.jsonl"),
    params: Path = ParamsOpt,
    split_dir: Path = typer.Option(paths.SPLIT, "--split"),
) -> None:
    """Write a demo request file (users, items, interactions and a few bad rows) into the inbox."""
    from tru.requests.demo import demo_requests

    p = load(params)
    counts = demo_requests(p.data.dataset_dir, split_dir, out, seed=p.seed)
    typer.echo(f"wrote {out}: {counts}")
