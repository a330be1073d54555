"""The `tru` command: thin sub-apps over the library. Each DVC stage is one `tru ...` call over a
function of `tru.stages`; the command only parses options, calls it and prints a summary.

The CLI is the top floor of the code base: it may start Prefect flows (`tru nightly`, `tru serve`,
`--runner` of the benchmarks); the library below it never imports `flows` or `tasks`.

Each command imports what it runs inside its body, on purpose: torch, Great Expectations, Prefect
and DVC take seconds to import, and `tru --help` or a one-line command should not pay for them
(`import tru.cli` loads only typer and this package).
"""

from __future__ import annotations

import os

import typer

# Offline, quiet defaults before any heavy import (GX, Prefect, HF read these at import).
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # a busy 2-core machine

from tru.cli import batch, bench, evidence, lifecycle, operate, pipeline  # noqa: E402  (after the environment above)

app = typer.Typer(
    help="tru: erase deletion requests from trained multimodal recommenders, with evidence.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",
)


@app.callback()
def main(
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="show the detail: tracebacks of errors, DVC's lock-file lines and git hints, Great "
        "Expectations' INFO lines, WeasyPrint's font warnings (also: TRU_VERBOSE=1)",
    ),
) -> None:
    """Quiet by default: an error a person can act on is one line (`error: ...`) and its exit
    status; the tools' chatter is dropped. `--verbose` brings it all back."""
    from tru import logs

    logs.configure(verbose)


app.add_typer(pipeline.app)
app.add_typer(batch.app)
app.add_typer(operate.app)
app.add_typer(lifecycle.app)
app.add_typer(bench.app, name="bench")
app.add_typer(evidence.app, name="evidence")

__all__ = ["app"]
