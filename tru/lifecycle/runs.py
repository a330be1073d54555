"""A consolidation or a purge as one run: under the run lock, then its lineage recorded (pushed
to the DVC remote and committed in git, as a batch's is). `tru consolidate`, `tru purge` and
the Prefect flows `data-consolidation` and `data-purge` call these."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from tru import paths
from tru.config import Params
from tru.lifecycle import consolidate as cons
from tru.lifecycle import purge as pg
from tru.lineage import record_change
from tru.runlock import run_lock


def consolidation_run(params: Params, echo: Callable[[str], None] = print, wait: float = 0) -> dict:
    """Consolidate (or resume) under the run lock, then record the lineage; returns the
    generation's record with the lineage's outcome under `lineage`."""
    with run_lock("consolidation", wait=wait):
        entry = cons.consolidate(params, echo=echo)
        lp = params.lineage
        message = f"consolidation: data generation {entry['generation']} (lineage recorded by tru)"
        done = record_change(message, lp.commit, lp.branch, lp.push, extra=[paths.TRAIN_REPORTS.as_posix()])
    return {**entry, "lineage": done}


def purge_run(
    params: Params, echo: Callable[[str], None] = print, wait: float = 0, scan: bool = True, now: datetime | None = None
) -> dict | None:
    """Purge what is due (or resume a purge) under the run lock, then record the lineage;
    returns the plan carried out with the lineage's outcome, None when nothing was due."""
    with run_lock("purge", wait=wait):
        plan = pg.purge(now or datetime.now(UTC), Path("."), params.data.dataset_dir, scan=scan, echo=echo)
        if plan is None:
            return None
        lp = params.lineage
        ledgers = [(paths.LEDGER / b).as_posix() for b in plan["ledgers"]]
        message = f"purge: data generation(s) {', '.join(map(str, plan['generations']))} (lineage recorded by tru)"
        extra = plan["paths"] + ledgers + [str(Path(plan["certificate"]).parent)]
        done = record_change(message, lp.commit, lp.branch, lp.push, extra=extra)
    return {**plan, "lineage": done}
