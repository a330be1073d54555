"""Running the pipeline: `nightly` (the erasure flow once), `serve` (its schedule), `status`,
`demo-requests`. These start Prefect flows: the CLI is the one floor above the orchestration.
And `portal`, the read-only evidence web page (tru/portal/)."""

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
REVIEW = "erasure-review/review"  # tru.nightly.REVIEW_DEPLOYMENT (not imported: it loads DVC)


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
    from tru.nightly import check_signing_key
    from tru.requests.ledger import parse_batch_time
    from tru.requests.pseudonym import load_key

    # configuration errors stop here, in one line, before a Prefect server starts
    load(params)
    load_key()
    check_signing_key()
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
        cons = out.get("consolidation")
        if cons is not None:
            typer.echo(f"consolidation due ({'; '.join(cons['reasons'])}): {_consolidation_line(cons)}")
    typer.echo("runs are recorded by Prefect: `make serve` starts the UI at http://127.0.0.1:4200 (Runs, Artifacts)")


def _consolidation_line(cons: dict) -> str:
    if cons.get("status") == "consolidated":
        return f"data generation {cons['generation']} in service (test Recall@20 {cons.get('test_recall@20')})"
    return f"{cons.get('status')}: {cons.get('message', '')}"


@app.command(rich_help_panel=PANEL)
@stage
def review(
    batch: str | None = typer.Option(None, help="the refused batch (default: the one awaiting review)"),
    params: Path = ParamsOpt,
) -> None:
    """Clear the batch the audit gate refused, so the queue moves on: erase it by an exact
    retrain (batches.yaml records `method: retrain`), then rerun its stages from the erasure to
    the evidence PDF, recorded in dvc.lock. Only this batch's stages run: earlier batches and
    their evidence stay as they are. An exact retrain never trained on the erased data, so the
    gate passes it (its checks are still measured and shown). The next `tru nightly` takes the
    requests waiting in the inbox.

    A killed review resumes where it stopped: run it again (or let the next nightly run finish
    it). On a Prefect server the same steps are the deployment `erasure-review/review`
    (`tru serve` registers it). Exit status: 0 (cleared), 2 (no batch awaits review), 5
    (another run holds the lock)."""
    from tru import batches, nightly

    verdict = nightly.clear_by_retrain(batch, params, echo=typer.echo)
    typer.echo(f"audit gate {str(verdict).upper()}; current model {batches.current_model()}")
    typer.echo("the next `tru nightly` takes the requests waiting in the inbox")


@app.command(
    rich_help_panel=PANEL,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
@stage
def repro(
    ctx: typer.Context,
    wait: float = typer.Option(0.0, help="seconds to wait for a running erasure run (0: exit at once)"),
) -> None:
    """`dvc repro` under the run lock: use it instead of `dvc repro` where a nightly run may be
    going on. Its arguments are dvc repro's (`tru repro --force --single-item report@0`).

    A bare `dvc repro` during a nightly run is refused too, by the first batch stage it
    reaches (its command exits 5), but only after DVC has removed that stage's outputs, as it
    does before every command it runs: `tru repro` is refused before DVC touches anything.
    Exit status: dvc repro's, or 5 when another run holds the lock."""
    import subprocess
    import sys

    from tru.runlock import run_lock

    with run_lock(f"tru repro {' '.join(ctx.args)}".strip(), wait=wait):
        code = subprocess.run([sys.executable, "-m", "dvc", "repro", *ctx.args]).returncode
    if code:
        raise typer.Exit(code)


@app.command("lineage", rich_help_panel=PANEL)
@stage
def lineage_cmd(params: Path = ParamsOpt) -> None:
    """Record the lineage now: `dvc push` to the default DVC remote, then commit batches.yaml,
    dvc.lock, the batches' `.dvc` pointers and reports in git (params.yaml `lineage`: which
    branch). A batch that passes does this by itself; run it after fixing what stopped it
    (`tru status` warns). Exit status 2 when git or DVC refused."""
    from tru import batches, lineage
    from tru.runlock import run_lock

    p = load(params).lineage
    registered = batches.read_batches()
    if not registered:
        typer.echo("no deletion batch yet: no lineage to record")
        return
    with run_lock("tru lineage"):
        last = registered[-1]["id"]
        out = lineage.record(last, batches.gate_verdict(last) or "not audited", p.commit, p.branch, p.push)
    if out["pushed"] is not None:
        typer.echo(f"dvc push: {out['pushed']} object(s) sent to the default DVC remote")
    typer.echo(f"git: committed {out['commit'][:12]}" if out["commit"] else "git: nothing new to commit")
    if out["notes"]:
        raise lineage.LineageError("; ".join(out["notes"]))


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
    """Serve the nightly deployment `erasure-batch/nightly` (and `erasure-review/review`, which
    clears a batch the audit gate refused) until interrupted, against the Prefect server at
    $PREFECT_API_URL, or a local one started here (`--local-server`)."""
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
                f"serving {DEPLOYMENT} and {REVIEW} against the Prefect server at {api} (PREFECT_API_URL); "
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
def portal(
    host: str = typer.Option(
        "127.0.0.1", help="where to listen; anything but a loopback address needs $TRU_PORTAL_TOKEN"
    ),
    port: int = typer.Option(8300, help="the port"),
    key: Path | None = typer.Option(
        None, "--key", help="the operator's public key (PEM) the badges trust, instead of the one reports/keys/ holds"
    ),
    root_path: str = typer.Option(
        "", "--root-path", help="the path prefix a reverse proxy serves the portal under (e.g. /evidence)"
    ),
) -> None:
    """The evidence portal, a read-only web page over this checkout for a data-protection
    officer: look a request up by its id (or a file of ids), see its status, batch, dates,
    verdict and checks, download the batch's evidence PDF and the person's certificate, and a
    badge per batch that says whether its evidence still matches what was signed (checked on
    every page load).

    Listens on 127.0.0.1 by default. With $TRU_PORTAL_TOKEN set, every page asks for it (HTTP
    basic auth: any user name, the token as the password; or `Authorization: Bearer`); beyond
    a loopback address it refuses to start without one (exit status 2). Request ids travel in
    form bodies only, never in a URL or a log line."""
    from tru.portal import access
    from tru.portal.app import serve as serve_portal

    token = access.portal_token()
    access.check_binding(host, token)
    where = "any user name, the token from $TRU_PORTAL_TOKEN" if token else "no token: this machine only"
    typer.echo(f"evidence portal on http://{host}:{port}{root_path} ({where}); Ctrl-C stops it")
    serve_portal(Path("."), host, port, token, key, root_path)


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
