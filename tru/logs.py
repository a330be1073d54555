"""Quiet by default: what `tru` and the Prefect flows let third-party libraries print.

The tools under the pipeline talk a lot: DVC says "Updating lock file" after every stage and
lists `git add` commands, Great Expectations announces a temporary docs site each time it
validates, WeasyPrint warns about every font it substitutes, and Prefect prints a full
traceback for every failed task, even for an expected refusal (the audit gate) or a
configuration error that the run reports in one line anyway. By default those go quiet;
`tru --verbose` (or TRU_VERBOSE=1, which child processes inherit) brings them all back.

Standard `logging` only: the library never imports Prefect (the run loggers are named here,
not imported). `configure()` is idempotent: the CLI calls it once per command, the flows and
tasks at the start of each run, so a flow run served in another process is quiet too.
"""

from __future__ import annotations

import logging
import os

from tru.errors import TruError

VERBOSE_ENV = "TRU_VERBOSE"

# logger -> the least level it passes when quiet (WeasyPrint's font substitutions are warnings)
QUIET_LEVELS = {
    "great_expectations": logging.WARNING,  # "Created temporary directory ... for ephemeral docs site"
    "weasyprint": logging.ERROR,  # font warnings; unreachable resources are errors and still show
    "fontTools": logging.ERROR,  # WeasyPrint's font subsetting
}
# loggers whose levels their library sets when it is imported (a level set here beforehand
# would be lost): a filter on the logger itself stays. DVC's INFO lines after each `dvc commit`
# and `dvc add` ("Updating lock file", "To track the changes with git, run: git add ...", "To
# enable auto staging ..."); its progress ("Running stage ...") stays
FILTERED = {
    "great_expectations.data_context.types.base": logging.WARNING,  # sets itself to INFO on import
    "dvc.dvcfile": logging.WARNING,
    "dvc.repo.scm_context": logging.WARNING,
}
# where Prefect's engine logs a failed task or flow run (with the traceback)
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def verbose() -> bool:
    """Whether the detail is wanted: `tru --verbose`, or TRU_VERBOSE set to anything but 0/false."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


class BelowLevel(logging.Filter):
    """Drops a logger's records below `level` unless verbose."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or verbose()


class ExpectedErrorsInOneLine(logging.Filter):
    """A TruError (a refusal, bad input, a missing key: an error a person acts on, explained in
    its message) logged with its traceback keeps its message and loses the traceback, unless
    verbose. Anything else (a bug) keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
        if isinstance(exc, TruError) and not verbose():
            record.exc_info = None
            record.exc_text = None
        return True


def _add_once(logger: logging.Logger, flt: logging.Filter) -> None:
    if not any(type(f) is type(flt) for f in logger.filters):
        logger.addFilter(flt)


def quiet_filters() -> None:
    """The filters alone (FILTERED, RUN_LOGGERS): they read TRU_VERBOSE at each record."""
    for name, level in FILTERED.items():
        _add_once(logging.getLogger(name), BelowLevel(level))
    for name in RUN_LOGGERS:
        _add_once(logging.getLogger(name), ExpectedErrorsInOneLine())


def configure(verbose_flag: bool = False) -> bool:
    """Quiet (or, verbose, restore) the noisy loggers; `verbose_flag` True also sets TRU_VERBOSE
    for child processes (DVC's stage commands, served flow runs). Returns whether verbose."""
    if verbose_flag:
        os.environ[VERBOSE_ENV] = "1"
    loud = verbose()
    for name, level in QUIET_LEVELS.items():
        logging.getLogger(name).setLevel(logging.NOTSET if loud else level)
    quiet_filters()
    return loud
