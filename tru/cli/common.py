"""What every `tru` sub-command shares: the error wrapper, the common options, params loading."""

from __future__ import annotations

import functools
import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from tru.errors import TruError

ParamsOpt = typer.Option(Path("params.yaml"), "--params", "-p", help="params.yaml to read")
BatchOpt = typer.Option(..., "--batch", "-b", help="the batch id (see `tru status` or batches.yaml)")
BatchTimeOpt = typer.Option(
    None,
    "--batch-time",
    help="the new batch's time, which names it and seeds its erasure "
    "(ISO 8601, UTC unless it has an offset; default: now; must be after the last batch's): "
    "replays an inbox to the same bytes",
)


def stage(fn: Callable) -> Callable:
    """Turn a TruError into one clear line on stderr (`error: ...`) and its exit status
    (err.exit_code); its traceback only with `tru --verbose`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TruError as err:
            from tru.logs import verbose

            if verbose():
                traceback.print_exc()
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None

    return wrapper


def locked(fn: Callable) -> Callable:
    """Run the command under the run lock (tru/runlock.py): a batch stage command run by `dvc
    repro` while a nightly run holds it exits 5 naming the holder, and `dvc repro` stops."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from tru.runlock import run_lock

        with run_lock(f"tru {fn.__name__.removesuffix('_cmd').replace('_', '-')}"):
            return fn(*args, **kwargs)

    return wrapper


def load(path: Path):
    """The validated params of `path` (params.yaml); config errors are TruErrors."""
    from tru.config import load_params  # pydantic models: loaded by the commands that need them

    return load_params(path)


def print_json(summary: dict) -> None:
    """A command's summary as indented JSON on stdout."""
    typer.echo(json.dumps(summary, indent=2, sort_keys=True, default=str))


def comma_list(text: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']."""
    return [x.strip() for x in text.split(",") if x.strip()]
