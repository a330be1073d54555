"""Prefect tasks: thin wrappers over tru.stages (the one implementation of each step). Each task
says in its run's log what its step did (the lines `tru <stage>` prints), so the run's logs in
the Prefect UI read as a record of the batch, not only "Finished in state Completed()"."""

from __future__ import annotations

import logging

from prefect import get_run_logger

from tru import logs


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The task run's logger, after tru.logs.configure(): a task may run in a process of its own
    (a Dask worker, a served flow run), which is then quiet too (no third-party chatter, an
    expected error in one line without its traceback, unless TRU_VERBOSE)."""
    logs.configure()
    return get_run_logger()
