"""Running the pipeline: `nightly` (the erasure flow once), `serve` (its schedule), `status`,
`demo-requests`. These start Prefect flows: the CLI is the one floor above the orchestration."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import typer

from tru import paths
from tru.cli.common import BatchTimeOpt, ParamsOpt, load, stage
from tru.errors import ConfigError

PANEL = "Operations"
app = typer.Typer()
DEPLOYMENT = "erasure-batch/nightly"


def prefect_api_url() -> str | None:
    """The Prefect server `tru` and the `prefect` command talk to: PREFECT_API_URL (the
    environment, or the active Prefect profile); None: each process starts a temporary one."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def check_prefect_api(url: str, timeout: float = 5.0) -> None:
    """A ConfigError when nothing answers at the Prefect API `url` (any HTTP answer will do:
    a server that wants a key still answers), before a run or a deployment waits on it."""
    try:
        urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise ConfigError(
            f"PREFECT_API_URL is {url} but no Prefect server answers there ({reason}): start it "
            "(`tru serve --local-server`, or `prefect server start`), or unset PREFECT_API_URL to run on "
            "a temporary server"
        ) from None


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
    $PREFECT_API_URL, or a temporary one. The run is named `erasure-<batch id>` and tagged with
    the audit gate's verdict (pass, fail; noop for an empty inbox).

    Exit status: 0 (erased, or nothing to erase), 2 (bad params.yaml, no pseudonymisation key,
    bad input, no Prefect server at $PREFECT_API_URL), 4 (the audit gate refused the batch, or
    an earlier batch awaits review), 5 (another run holds the lock)."""
    from tru.requests.ledger import parse_batch_time
    from tru.requests.pseudonym import load_key

    # configuration errors stop here, in one line, before a Prefect server starts
    load(params)
    load_key()
    if batch_time is not None:
        parse_batch_time(batch_time)
    url = prefect_api_url()
    if url:
        check_prefect_api(url)

    from flows.erasure import erasure_batch  # why: loads every pipeline stage

    state = erasure_batch(str(params), None if inbox is None else str(inbox), wait, batch_time, return_state=True)
    out = state.result()  # raises the flow's error: a TruError is one line and its exit status (gate: 4)
    if out["status"] == "empty":
        typer.echo("nothing to erase: the inbox is empty (nothing changed)")
    elif out["status"] == "locked":  # not a success: a scheduler must see that nothing ran (exit 5)
        from tru.runlock import RunLocked

        raise RunLocked(out["message"])
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
            typer.echo(
                f"in another shell, point Prefect at it first: export PREFECT_API_URL={url} "
                f"(without it, `prefect deployment run {DEPLOYMENT}` starts a temporary server of its own, "
                "which knows no deployment, and `tru nightly` runs on one)"
            )
        elif api := prefect_api_url():
            check_prefect_api(api)
            typer.echo(
                f"serving {DEPLOYMENT} against the Prefect server at {api} (PREFECT_API_URL); "
                "`prefect deployment run` needs the same PREFECT_API_URL"
            )
        else:
            typer.echo(
                "note: PREFECT_API_URL is not set: serving against a temporary server (runs vanish on exit, and "
                "`prefect deployment run` without it starts a temporary server of its own, which has no "
                "deployment); `tru serve --local-server` (or `make serve`) starts a persistent one on 127.0.0.1, "
                f"then in other shells: export PREFECT_API_URL=http://127.0.0.1:{port}/api",
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
