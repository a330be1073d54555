"""Erasure tasks over tru.stages: the update, the repair, the batch evaluation and the audit
gate. Task results are paths, hashes and small summaries."""

from __future__ import annotations

from prefect import task

from tru import stages
from tru.config import load_params


@task(name="tru-update")
def erase_task(params_path: str, batch_id: str, method: str | None = None) -> dict:
    """Not retried: a crash leaves no checkpoint (written to a temporary path, then renamed)
    and a rerun starts from the same base model, so the flow reruns it as a whole."""
    return stages.erase_stage(load_params(params_path), batch_id, method)


@task(name="repair")
def repair_task(params_path: str, batch_id: str) -> dict:
    return stages.repair_stage(load_params(params_path), batch_id)


@task(name="evaluate-batch")
def evaluate_batch_task(params_path: str, batch_id: str) -> dict:
    return stages.evaluate_batch_stage(load_params(params_path), batch_id)


@task(name="audit-gate")
def audit_task(params_path: str, batch_id: str) -> dict:
    """Raises AuditGateFailed (the flow run fails, naming the checks) when the gate refuses."""
    return stages.audit_stage(load_params(params_path), batch_id)


@task(name="evidence-pdf", retries=1)
def report_task(params_path: str, batch_id: str) -> dict:
    """A retry can help here (a transient font or file-system hiccup); the PDF is written to a
    temporary path and renamed, so a crash never leaves half a PDF."""
    return stages.report_stage(load_params(params_path), batch_id)
