"""Erasure tasks over tru.stages: the update, the repair, the batch evaluation and the audit
gate. Task results are paths, hashes and small summaries."""

from __future__ import annotations

import logging

from prefect import task

from tasks import run_logger
from tru import paths
from tru.config import load_params
from tru.errors import AuditGateFailed
from tru.io import read_json
from tru.stages.audit import audit_stage
from tru.stages.erase import erase_stage
from tru.stages.evaluate_batch import evaluate_batch_stage
from tru.stages.repair import repair_stage
from tru.stages.report import report_stage


@task(name="tru-update", task_run_name="tru-update-{batch_id}")
def erase_task(params_path: str, batch_id: str, method: str | None = None) -> dict:
    """tru.stages.erase.erase_stage: the batch's erasure by `method` (default: params'); its summary.
    Not retried: a crash leaves no checkpoint (written to a temporary path, then renamed)
    and a rerun starts from the same base model, so the flow reruns it as a whole."""
    log = run_logger()
    s = erase_stage(load_params(params_path), batch_id, method)
    log.info(f"erased by {s['method']}: wrote {s['checkpoint']} (sha256 {s['weights_sha256'][:12]}…)")
    return s


@task(name="repair", task_run_name="repair-{batch_id}")
def repair_task(params_path: str, batch_id: str) -> dict:
    """tru.stages.repair.repair_stage: the batch's final repair; its summary."""
    log = run_logger()
    s = repair_stage(load_params(params_path), batch_id)
    log.info(f"repaired in {s['epochs']} epoch(s): {s['checkpoint']}")
    return s


@task(name="evaluate-batch", task_run_name="evaluate-batch-{batch_id}")
def evaluate_batch_task(params_path: str, batch_id: str) -> dict:
    """tru.stages.evaluate_batch.evaluate_batch_stage: the batch's retain/forget metrics; its summary."""
    log = run_logger()
    s = evaluate_batch_stage(load_params(params_path), batch_id)
    for name, vals in s["values"].items():
        if isinstance(vals, dict):
            log.info(
                f"{name}: "
                + ", ".join(f"{k} Recall@20 {v['recall@20']:.4f}" for k, v in vals.items() if "recall@20" in v)
            )
    return s


def gate_lines(audit: dict) -> list[str]:
    """The audit gate's checks in `audit` (reports/<batch>/audit.json), a line each: result,
    value, limit, and why a check was not judged; then the verdict."""
    lines = []
    for c in audit.get("checks", []):
        mark = {True: "pass", False: "FAIL", None: "n/a"}[c.get("passed")]
        value = "-" if c["value"] is None else f"{c['value']:.4f}"
        note = f": {c['note']}" if c.get("passed") is None and c.get("note") else ""
        lines.append(f"[{mark}] {c['name']} {value} (allowed {c['op']} {c['threshold']}){note}")
    verdict = str(audit.get("verdict", "not audited")).upper()
    failed = audit.get("failed") or []
    lines.append(f"audit gate {verdict}" + (f": failed {', '.join(failed)}" if failed else ""))
    return lines


@task(name="audit-gate", task_run_name="audit-gate-{batch_id}")
def audit_task(params_path: str, batch_id: str) -> dict:
    """tru.stages.audit.audit_stage: the batch's audits and gate; its summary. Logs every check
    of the gate; raises AuditGateFailed (the flow run fails, naming the checks) when it refuses."""
    log = run_logger()
    try:
        s = audit_stage(load_params(params_path), batch_id)
    except AuditGateFailed:
        for line in gate_lines(read_json(paths.report_dir(batch_id) / "audit.json")):
            log.log(logging.WARNING if line.startswith(("[FAIL]", "audit gate")) else logging.INFO, line)
        raise
    for line in gate_lines(read_json(s["audit"])):
        log.info(line)
    log.info(f"{s['requests']} request(s) now {s['status']}; wrote {s['audit']}")
    return s


@task(name="evidence-pdf", task_run_name="evidence-pdf-{batch_id}", retries=1)
def report_task(params_path: str, batch_id: str) -> dict:
    """tru.stages.report.report_stage: the batch's evidence PDF; its summary. A retry can help
    here (a transient font or file-system hiccup); the PDF is written to a temporary path and
    renamed, so a crash never leaves half a PDF."""
    log = run_logger()
    s = report_stage(load_params(params_path), batch_id)
    log.info(f"wrote {s['pdf']} (sha256 {s['sha256'][:12]}…) and {s['manifest']}")
    return s
