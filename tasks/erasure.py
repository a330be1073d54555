"""Erasure tasks over tru.stages: the update, the repair, the batch evaluation and the audit
gate. Task results are paths, hashes and small summaries."""

from __future__ import annotations

from prefect import task

from tru.config import load_params
from tru.stages.audit import audit_stage
from tru.stages.erase import erase_stage
from tru.stages.evaluate_batch import evaluate_batch_stage
from tru.stages.repair import repair_stage
from tru.stages.report import report_stage


@task(name="tru-update")
def erase_task(params_path: str, batch_id: str, method: str | None = None) -> dict:
    """tru.stages.erase.erase_stage: the batch's erasure by `method` (default: params'); its summary.
    Not retried: a crash leaves no checkpoint (written to a temporary path, then renamed)
    and a rerun starts from the same base model, so the flow reruns it as a whole."""
    return erase_stage(load_params(params_path), batch_id, method)


@task(name="repair")
def repair_task(params_path: str, batch_id: str) -> dict:
    """tru.stages.repair.repair_stage: the batch's final repair; its summary."""
    return repair_stage(load_params(params_path), batch_id)


@task(name="evaluate-batch")
def evaluate_batch_task(params_path: str, batch_id: str) -> dict:
    """tru.stages.evaluate_batch.evaluate_batch_stage: the batch's retain/forget metrics; its summary."""
    return evaluate_batch_stage(load_params(params_path), batch_id)


@task(name="audit-gate")
def audit_task(params_path: str, batch_id: str) -> dict:
    """tru.stages.audit.audit_stage: the batch's audits and gate; its summary. Raises
    AuditGateFailed (the flow run fails, naming the checks) when the gate refuses."""
    return audit_stage(load_params(params_path), batch_id)


@task(name="evidence-pdf", retries=1)
def report_task(params_path: str, batch_id: str) -> dict:
    """tru.stages.report.report_stage: the batch's evidence PDF; its summary. A retry can help
    here (a transient font or file-system hiccup); the PDF is written to a temporary path and
    renamed, so a crash never leaves half a PDF."""
    return report_stage(load_params(params_path), batch_id)
