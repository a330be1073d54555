"""Deletion-batch tasks over tru.stages: ingest, forget/retain sets, component map."""

from __future__ import annotations

from prefect import task

from tru import stages
from tru.config import load_params


@task(name="ingest-deletions")
def ingest_task(params_path: str, inbox: str | None = None, batch_time: str | None = None) -> dict:
    """Take the inbox as one batch (named by `batch_time`, ISO 8601; default: now). Not
    retried: an unreadable file needs a person, and a retry of a crashed ingest resumes its
    interrupted archive moves by itself."""
    return stages.ingest_stage(load_params(params_path), inbox, now=batch_time)


@task(name="forget-retain-sets")
def sets_task(params_path: str, batch_id: str) -> dict:
    return stages.sets_stage(load_params(params_path), batch_id)


@task(name="map-components")
def map_task(params_path: str, batch_id: str) -> dict:
    return stages.map_stage(load_params(params_path), batch_id)
