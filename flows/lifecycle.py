"""The data lifecycle's flows: `data-consolidation` (an exact retrain on the redacted data, the
new base of the lineage) and `data-purge` (what held erased data, once its retention window
has closed). Each calls the one implementation `tru consolidate` and `tru purge` call
(tru.lifecycle.runs); `tru serve` registers them as deployments on schedules of their own
(`data-consolidation/weekly`, `data-purge/daily`)."""

from __future__ import annotations

from prefect import flow, get_run_logger

from tru import logs
from tru.config import load_params
from tru.lifecycle.consolidate import NothingToConsolidate
from tru.lifecycle.runs import consolidation_run, purge_run
from tru.runlock import RunLocked


@flow(name="data-consolidation", log_prints=True)
def data_consolidation(params_path: str = "params.yaml", wait_for_lock: float = 0) -> dict:
    """Fold the batches since the last consolidation into the next data generation (or resume
    an unfinished one). Returns its record; {"status": "nothing"} without a batch, {"status":
    "locked"} while another run holds the lock."""
    logs.configure()
    logger = get_run_logger()
    try:
        entry = consolidation_run(load_params(params_path), echo=logger.info, wait=wait_for_lock)
    except NothingToConsolidate as err:
        logger.info(str(err))
        return {"status": "nothing", "message": str(err)}
    except RunLocked as err:
        logger.warning(str(err))
        return {"status": "locked", "message": str(err)}
    for note in entry["lineage"]["notes"]:
        logger.warning(f"lineage: {note}")
    return {"status": "consolidated", **entry}


@flow(name="data-purge", log_prints=True)
def data_purge(params_path: str = "params.yaml", wait_for_lock: float = 0) -> dict:
    """Purge every generation whose retention window has closed (or resume a purge). Returns
    the plan carried out; {"status": "nothing"} when nothing is due."""
    logs.configure()
    logger = get_run_logger()
    try:
        plan = purge_run(load_params(params_path), echo=logger.info, wait=wait_for_lock)
    except RunLocked as err:
        logger.warning(str(err))
        return {"status": "locked", "message": str(err)}
    if plan is None:
        logger.info("nothing to purge: no retention window has closed")
        return {"status": "nothing"}
    for r in plan["not_purged"]:
        logger.warning(f"not purged: remote {r['remote']} ({r['url']}) was not opened ({r['why']})")
    for md5, where in plan["left_on_remotes"].items():
        logger.warning(f"not purged: object {md5} stays on {', '.join(f'{k} ({v})' for k, v in where.items())}")
    return {"status": "purged", "objects": len(plan["objects"]), "generations": plan["generations"]}
