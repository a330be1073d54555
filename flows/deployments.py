"""The nightly deployment of `erasure_batch`: served by this process against a Prefect server
(a local one: `prefect server start --host 127.0.0.1`, SQLite under $PREFECT_HOME; production:
PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://user:pass@host:5432/prefect on the server).

`tru serve` (or `make serve`, which also starts the local server) registers the deployment
`erasure-batch/nightly` with a cron schedule, `erasure-review/review` without one (it clears
a batch the audit gate refused), `data-consolidation/weekly` and `data-purge/daily` (the data
lifecycle, flows/lifecycle.py), and runs their scheduled and manual runs. At most one run at a
time: each deployment's concurrency limit cancels a new run while one is active, and the run
lock in the flows serialises everything else.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Schedule
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from tru.errors import ConfigError, TruError

DEFAULT_CRON = "0 2 * * *"  # every night at 02:00
DEFAULT_TIMEZONE = "UTC"
DEPLOYMENT = "nightly"
REVIEW_DEPLOYMENT = "review"  # erasure-review/review (tru.nightly.REVIEW_DEPLOYMENT)
CONSOLIDATION_CRON = "0 3 * * 0"  # data-consolidation/weekly: Sundays at 03:00
PURGE_CRON = "0 4 * * *"  # data-purge/daily: every day at 04:00 (nothing to do until a window closes)


def task_runner(name: str = "thread", workers: int = 2) -> TaskRunner[Any]:
    """The flow's task runner: `thread` (Prefect's default) or `dask` (prefect-dask; a local
    cluster of `workers` single-threaded processes, or the scheduler at $TRU_DASK_ADDRESS)."""
    if name == "thread":
        return ThreadPoolTaskRunner(max_workers=workers)
    if name == "dask":
        try:  # an optional dependency (the `dask` extra)
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise ConfigError("the dask task runner needs prefect-dask: pip install -e '.[dask]'") from None
        import dask

        # a benchmark cell runs in a child process of its own (its peak RSS is its own): the
        # workers must be allowed children
        dask.config.set({"distributed.worker.daemon": False})
        address = os.environ.get("TRU_DASK_ADDRESS")
        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})
    raise ConfigError(f"unknown task runner {name!r} (thread or dask)")


def build_schedule(cron: str = DEFAULT_CRON, timezone: str = DEFAULT_TIMEZONE) -> Schedule:
    """The deployment's schedule: the cron expression `cron` in the IANA time zone `timezone`;
    a bad expression or an unknown zone is a ConfigError."""
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {timezone!r} (an IANA name, e.g. UTC or Europe/Berlin)") from None
    try:
        return Cron(cron, timezone=timezone)
    except ValueError as err:  # Prefect validates the expression and the time zone
        raise ConfigError(f"bad schedule {cron!r} ({timezone}): {err} (five fields, e.g. {DEFAULT_CRON!r})") from None


def serve(
    cron: str = DEFAULT_CRON,
    timezone: str = DEFAULT_TIMEZONE,
    params_path: str = "params.yaml",
    runner: str = "thread",
    name: str = DEPLOYMENT,
) -> None:
    """Register the deployments and run their flow runs until interrupted (Ctrl-C):
    `erasure-batch/<name>` (the erasure flow with `params_path`, on the schedule, on the task
    runner `runner`) and `erasure-review/review` (no schedule: a person runs it to clear a batch
    the audit gate refused, `prefect deployment run erasure-review/review`)."""
    from prefect import serve as serve_all  # why: the runner; local_server does not need it

    from flows.erasure import erasure_batch, erasure_review  # why: they load every pipeline stage
    from flows.lifecycle import data_consolidation, data_purge

    # at most one run per deployment at a time (the run lock serialises the two deployments)
    one_at_a_time = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    nightly = erasure_batch.with_options(task_runner=task_runner(runner)).to_deployment(
        name=name,
        schedule=build_schedule(cron, timezone),
        parameters={"params_path": params_path},
        concurrency_limit=one_at_a_time,
        tags=["tru", "erasure"],
        description="Nightly erasure of the deletion requests in data/deletions/inbox/ (TRU), with audits and evidence",
    )
    review = erasure_review.to_deployment(
        name=REVIEW_DEPLOYMENT,
        parameters={"params_path": params_path},
        concurrency_limit=one_at_a_time,
        tags=["tru", "review"],
        description="Clear the batch the audit gate refused by an exact retrain of it; the queue then moves on",
    )
    consolidation = data_consolidation.to_deployment(
        name="weekly",
        schedule=build_schedule(CONSOLIDATION_CRON, timezone),
        parameters={"params_path": params_path},
        concurrency_limit=one_at_a_time,
        tags=["tru", "lifecycle"],
        description="Retrain the base model exactly on the data without every erased subject; archive the batches",
    )
    purge = data_purge.to_deployment(
        name="daily",
        schedule=build_schedule(PURGE_CRON, timezone),
        parameters={"params_path": params_path},
        concurrency_limit=one_at_a_time,
        tags=["tru", "lifecycle"],
        description="Remove what held erased data once its retention window (lifecycle.retention_days) has closed",
    )
    serve_all(
        cast(RunnerDeployment, nightly),
        cast(RunnerDeployment, review),
        cast(RunnerDeployment, consolidation),
        cast(RunnerDeployment, purge),
    )


@contextlib.contextmanager
def local_server(
    host: str = "127.0.0.1", port: int = 4200, timeout: float = 180.0, log: str | None = None
) -> Iterator[str]:
    """A real Prefect server (`prefect server start`, SQLite under $PREFECT_HOME) on loopback
    for as long as the body runs; yields its API URL and points this process at it."""
    url = f"http://{host}:{port}/api"
    prefect = Path(sys.executable).with_name("prefect")
    log_file = open(log, "ab") if log else None
    out = subprocess.DEVNULL if log_file is None else log_file
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": url}
    proc = subprocess.Popen(
        [str(prefect), "server", "start", "--host", host, "--port", str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise TruError(f"prefect server exited with status {proc.returncode} (is port {port} taken?)")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TruError(f"prefect server did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.5)
        before = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = url  # for child processes too
        try:
            with temporary_settings(updates={PREFECT_API_URL: url}):
                yield url
        finally:
            os.environ.pop("PREFECT_API_URL") if before is None else os.environ.update(PREFECT_API_URL=before)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log_file is not None:
            log_file.close()


if __name__ == "__main__":
    serve()
