"""Deletion-batch tasks over tru.stages: ingest, forget/retain sets, component map."""

from __future__ import annotations

from prefect import task

from tasks import run_logger
from tru.config import load_params
from tru.stages.components import map_stage
from tru.stages.ingest import ingest_stage
from tru.stages.sets import sets_stage


@task(name="ingest-deletions")
def ingest_task(params_path: str, inbox: str | None = None, batch_time: str | None = None) -> dict:
    """tru.stages.ingest.ingest_stage: the inbox as one batch (named by `batch_time`, ISO 8601;
    default: now); its summary (`batch_id` None for an empty inbox). Not retried: an unreadable
    file needs a person, and a retry of a crashed ingest resumes its interrupted archive moves
    by itself."""
    log = run_logger()
    s = ingest_stage(load_params(params_path), inbox, now=batch_time)
    if s["batch_id"] is None:
        log.info("the inbox is empty: nothing ingested")
    else:
        by_status = ", ".join(f"{k} {v}" for k, v in s["by_status"].items())
        log.info(f"batch {s['batch_id']}: {s['rows']} request rows ({by_status})")
    return s


@task(name="forget-retain-sets", task_run_name="forget-retain-sets-{batch_id}")
def sets_task(params_path: str, batch_id: str) -> dict:
    """tru.stages.sets.sets_stage: the batch's forget and retain sets; their summary."""
    log = run_logger()
    s = sets_stage(load_params(params_path), batch_id)
    b = s["batch"]
    log.info(
        f"forget {b['forget']} interactions of {b['affected_users']} users and {b['target_items']} items; "
        f"retain {b['retain']}; held out {b['heldout']}"
    )
    return s


@task(name="map-components", task_run_name="map-components-{batch_id}")
def map_task(params_path: str, batch_id: str) -> dict:
    """tru.stages.components.map_stage: the batch's component map; its summary."""
    log = run_logger()
    s = map_stage(load_params(params_path), batch_id)
    log.info(f"wrote {s['components']}")
    return s
