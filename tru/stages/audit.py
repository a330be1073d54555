"""The audit stage: membership inference, backdoor canary, exposure and parameter-shift
audits, the gate, and the ledger's verdict for the batch's requests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq

from tru import batches, paths
from tru.audit import canary as canary_mod
from tru.audit.chain import chain_membership
from tru.audit.gate import exact_retrain_verdict, failure_message, inconclusive_message, promoted
from tru.audit.run import audit_batch
from tru.checkpoint import load_checkpoint
from tru.config import Params
from tru.data.dataset import load_split
from tru.errors import AuditGateFailed, DataError
from tru.io import read_json, write_json
from tru.requests.backdoors import declared_backdoors
from tru.requests.ledger import GATE_DIR, append_status, batch_time, requests_path
from tru.requests.schema import ACCEPTED, ERASED, NEEDS_REVIEW
from tru.stages.context import batch_models, load_context
from tru.stages.plotdata import write_audit_plots
from tru.train import seed_everything


def chain_check(params: Params, ctx, model) -> dict:
    """The chain's membership check (tru.audit.chain) of the batch's model: every interaction
    erased since the generation's base split (data/split) against its users' shadow pairs, the
    generation's base model (data/models/base) as the power reference. Not part of the gate:
    `lifecycle.consolidate_when.interaction_residue` reads it."""
    if not (paths.SPLIT / "train.parquet").is_file() or not (paths.BASE_MODEL / "checkpoint.json").is_file():
        return {"flagged": False, "verdict": "nothing to test", "why": "no base split or base model"}
    base = load_split(paths.SPLIT, params.data.dataset_dir)
    original, _ = load_checkpoint(paths.BASE_MODEL, base.features)
    original.set_graph(base.train, base.active_items)
    original.eval()
    return chain_membership(model, original, base, ctx.data, params.audit.gate, ctx.seed)


def audit_stage(params: Params, batch_id: str, batches_file: str | Path | None = None) -> dict:
    """reports/<batch>/audit.json and the gate: on pass (or inconclusive under the policy
    `audit.gate.inconclusive: pass`) the batch's model is promoted and its accepted requests
    become `erased`; on fail (or inconclusive under `review`) they become `needs_review`, the
    current model stays, and AuditGateFailed (exit status 4) names the failed checks. Returns the audit's
    path, verdict, failed checks and the requests' new status."""
    seed_everything(params.seed, params.train.threads)
    ctx, entry = load_context(params, batch_id, batches_file)
    models = batch_models(ctx, batch_id)
    metrics_path = paths.report_dir(batch_id) / "metrics.json"  # written by `tru evaluate-batch --batch`
    if not metrics_path.is_file():
        raise DataError(f"{metrics_path}: not found (run `tru evaluate-batch --batch {batch_id}` first)")
    recorded = read_json(metrics_path)
    metrics = {name: recorded[name] for name in models if name in recorded}
    if set(metrics) != set(models):
        raise DataError(
            f"{metrics_path}: has {sorted(metrics)}, the batch has models {sorted(models)} "
            f"(rerun `tru evaluate-batch --batch {batch_id}`)"
        )
    declared = declared_backdoors(paths.LEDGER, batch_id)
    result = audit_batch(ctx, models, metrics, params, canary_mod.load(paths.sets_dir(batch_id)), declared)
    if entry.get("method") == "retrain":
        result = exact_retrain_verdict(result)
    passed = promoted(result)
    audit = {
        "batch": batch_id,
        "method": entry.get("method", params.unlearn.method),
        "verdict": result["verdict"],
        "promoted": passed,
        "current_model": batches.promoted_model(batch_id) if passed else entry["base_model"],
        **{k: v for k, v in result.items() if k != "verdict"},
        "metrics": metrics,
        "chain": chain_check(params, ctx, models["unlearned"]),
    }
    path = paths.report_dir(batch_id) / "audit.json"
    write_json(path, audit)
    write_audit_plots(batch_id, audit)

    # the ledger: every accepted request of the batch moves on (deterministic time: the batch's)
    req = pq.read_table(requests_path(paths.LEDGER, batch_id), columns=["request_id", "status"]).to_pandas()
    ids = sorted(req.loc[req["status"] == ACCEPTED, "request_id"].tolist())
    status = ERASED if passed else NEEDS_REVIEW
    reason = None
    if not passed:
        reason = (
            "audit gate failed: " + ", ".join(result["failed"])
            if result["failed"]
            else "audit gate inconclusive (audit.gate.inconclusive: review)"
        )
    # a batch that failed before and passes now (the retrain fallback) records a review event
    # after its audit event, so the ledger keeps both; failing again changes nothing
    stage: str | None = "audit"
    at = batch_time(batch_id) + timedelta(seconds=1)
    earlier = paths.LEDGER / batch_id / GATE_DIR / "status-audit.parquet"
    failed_before = earlier.is_file() and set(
        pq.read_table(earlier, columns=["status"]).column("status").to_pylist()
    ) == {NEEDS_REVIEW}
    if failed_before:
        stage, at = ("review", at + timedelta(seconds=1)) if passed else (None, at)
    if stage is not None:
        append_status(paths.LEDGER, batch_id, stage, ids, status, at, reason)
    summary = {
        "audit": str(path),
        "verdict": result["verdict"],
        "failed": result["failed"],
        "requests": len(ids),
        "status": status,
    }
    if not passed:
        message = failure_message if result["failed"] else inconclusive_message
        raise AuditGateFailed(message(batch_id, result))
    return summary
