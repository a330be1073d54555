"""Deletion-batch tasks over tru.stages: ingest, forget/retain sets, component map."""

from __future__ import annotations

from prefect import task

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
    return ingest_stage(load_params(params_path), inbox, now=batch_time)


@task(name="forget-retain-sets")
def sets_task(params_path: str, batch_id: str) -> dict:
    """tru.stages.sets.sets_stage: the batch's forget and retain sets; their summary."""
    return sets_stage(load_params(params_path), batch_id)


@task(name="map-components")
def map_task(params_path: str, batch_id: str) -> dict:
    """tru.stages.components.map_stage: the batch's component map; its summary."""
    return map_stage(load_params(params_path), batch_id)
