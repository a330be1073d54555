"""The nightly erasure flow: inbox -> ledger -> forget/retain sets -> component map -> TRU
update -> repair -> evaluation -> audits and gate -> evidence PDF, recorded in DVC.

Every step is a task in tasks/ over the same function as its `tru` stage command (tru.stages),
so `dvc repro` and this flow write the same files; after each step the flow records the stage
in dvc.lock (`dvc commit`: the hashes of exactly the files the step wrote), so `dvc status` is
clean after a run and an auditor can `dvc repro --force` any batch.

- One run at a time: the run lock (tru/runlock.py); a second trigger exits cleanly.
- Crash safety: a killed run resumes its batch on the next run; finished stages are skipped
  (tru/nightly.py), an interrupted one reruns, nothing half-written is ever taken as a result.
- An empty inbox: a "nothing to erase" summary, nothing changed.
- A refused erasure (audit gate): the flow run fails naming the checks; the requests are
  `needs_review` and the current model stays.

What the runs list shows: a run is named after its batch, `erasure-<batch id>`, as soon as the
batch is known (`erasure-starting-<time>` until then), `erasure-noop-<time>` when the inbox was
empty, `erasure-locked-<time>` when another run held the lock and `erasure-error-<time>` when it
stopped before it had a batch; it is tagged with its outcome: `pass` or `fail` (the audit
gate's verdict), `noop` (nothing erased) or `error`. An error a person acts on (a TruError: the
gate's refusal, a missing key, a batch awaiting review) ends the run Failed with that one line
as its message, without a traceback (`tru --verbose` / TRU_VERBOSE=1: with it).

Run once: `tru nightly` (an ephemeral Prefect server unless PREFECT_API_URL names one);
on a schedule: `tru serve` / `make serve` (flows/deployments.py).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

from prefect import Task, flow, get_client, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.context import FlowRunContext
from prefect.states import Failed

from tasks import run_logger
from tasks.erasure import audit_task, erase_task, evaluate_batch_task, repair_task, report_task
from tasks.requests import ingest_task, map_task, sets_task
from tru import batches, logs, nightly, paths
from tru.config import load_params
from tru.dvcio import dvc_add, dvc_commit
from tru.errors import AuditGateFailed, TruError
from tru.io import read_json
from tru.portal import DEFAULT_PORT
from tru.requests.ledger import read_ledger
from tru.runlock import RunLocked, run_lock

STAGE_TASKS: dict[str, Task[..., dict]] = {
    "sets": sets_task,
    "map": map_task,
    "erase": erase_task,
    "repair": repair_task,
    "evaluate_batch": evaluate_batch_task,
    "audit": audit_task,
    "report": report_task,
}


@task(name="recover")
def recover_task(params_path: str) -> dict:
    """Repair what a killed run can leave behind (tru.nightly.recover); returns what it repaired."""
    return nightly.recover(load_params(params_path).unlearn.method)


@task(name="dvc-add-inputs", task_run_name="dvc-add-inputs-{batch_id}", retries=2, retry_delay_seconds=5)
def dvc_add_task(batch_id: str) -> list[str]:
    """Version the batch's archived inputs and requests (retried: DVC's own lock may be busy);
    returns the .dvc files written."""
    pointers = nightly.dvc_pointers(batch_id)
    dvc_add(pointers)
    return [f"{p}.dvc" for p in pointers]


@task(name="dvc-commit", task_run_name="dvc-commit-{target}", retries=2, retry_delay_seconds=5)
def dvc_commit_task(target: str) -> str:
    """Record one finished stage `target` in dvc.lock (retried: DVC's own lock may be busy);
    returns `target`."""
    dvc_commit([target])
    return target


@task(name="sign-and-record", task_run_name="sign-and-record-{batch_id}")
def finish_task(params_path: str, batch_id: str) -> dict:
    """After a batch passed (tru.nightly.finish_batch): sign its evidence, then record its
    lineage (`dvc push`, then a git commit, as params.yaml's `lineage` says); what git or the
    remote refuse is a warning, not a failure: the batch is erased and recorded in dvc.lock,
    and `tru status` warns until `tru lineage` is run."""
    log = run_logger()
    return nightly.finish_batch(batch_id, load_params(params_path).lineage, echo=log.info)


# --- the run's name and tags ------------------------------------------------------------------


def _stamp() -> str:
    """Now, as in batch ids: 20260201T020000Z."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _starting_name() -> str:
    """The run's name until its batch is known (Prefect's `flow_run_name`, set as it starts)."""
    return f"erasure-starting-{_stamp()}"


class _RunNames(logging.Filter):
    """Prefect's engine logs a run's last lines ("Finished in state ...") under the name the run
    started with; this shows the name it has by then."""

    names: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        name = self.names.get(str(getattr(record, "flow_run_id", "")))
        if name is not None:
            record.flow_run_name = name
        return True


def _label_run(name: str | None = None, tag: str | None = None) -> None:
    """Rename the current flow run and/or add a tag, on the server (the runs list) and in this
    process (the run's log lines). A label is never worth failing a run: a refusal of the API
    is a warning."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    run = ctx.flow_run
    tags = sorted({*run.tags, tag}) if tag else list(run.tags)
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run.id, name=name, tags=tags)
    except Exception as err:  # the API's many errors: the run goes on, unlabelled
        get_run_logger().warning(f"could not label the run ({name or ''} {tag or ''}): {err}")
        return
    if name:
        run.name = name
        _RunNames.names[str(run.id)] = name
        flow_logger = logging.getLogger("prefect.flow_runs")
        if not any(isinstance(f, _RunNames) for f in flow_logger.filters):
            flow_logger.addFilter(_RunNames())
    run.tags = tags


@flow(name="erasure-batch", log_prints=True, flow_run_name=_starting_name)
def erasure_batch(
    params_path: str = "params.yaml", inbox: str | None = None, wait_for_lock: float = 0, batch_time: str | None = None
) -> dict[str, Any]:
    """Erase one deletion batch: the unfinished one if a run was interrupted, else the inbox,
    as a batch named by `batch_time` (ISO 8601, UTC unless it has an offset; default: now).
    The batch id seeds the erasure: a fixed time replays an inbox to the same bytes.

    A TruError ends the run Failed, its one line the state's message and the error its result
    (`state.result()` raises it)."""
    logs.configure()
    logger = get_run_logger()
    run: dict[str, str | None] = {"batch": None}  # what _run knows so far
    try:
        with run_lock("erasure-batch flow", wait=wait_for_lock):
            out = _run(params_path, inbox, logger, batch_time, run)
        if out.get("lineage") is not None:  # a batch finished and recorded: the lifecycle's turn
            out["consolidation"] = _consolidate_if_due(params_path, logger)
        return out
    except RunLocked as err:
        _label_run(f"erasure-locked-{_stamp()}", "noop")
        logger.warning(str(err))
        create_markdown_artifact(
            f"# Erasure run skipped\n\n{err}", key="erasure-summary", description="another run holds the lock"
        )
        return {"status": "locked", "message": str(err)}
    except TruError as err:  # a refusal, bad input, a missing key: one line, no traceback
        if isinstance(err, nightly.AwaitingReview):
            _blocked_artifact(err.batch)
        if run["batch"] is None:
            _label_run(f"erasure-error-{_stamp()}", "error")
        else:
            _label_run(tag="fail" if isinstance(err, AuditGateFailed) else "error")
        if logs.verbose():
            logger.error(f"{type(err).__name__}: {err}", exc_info=err)
        # Prefect: a State returned by a flow is its final state; a caller gets the dict above, or,
        # from this one, the error raised by `state.result()` (or by the call without return_state)
        return Failed(message=str(err), data=err)  # type: ignore[return-value]


def _consolidate_if_due(params_path: str, logger) -> dict | None:
    """The consolidation the policy calls for after this batch (tru.lifecycle.policy), as the
    flow `data-consolidation` under its own run lock; None when none is due."""
    from flows.lifecycle import data_consolidation
    from tru.lifecycle.policy import consolidation_due

    reasons = consolidation_due(load_params(params_path))
    if not reasons:
        return None
    logger.info("consolidation due: " + "; ".join(reasons))
    try:
        done = data_consolidation(params_path=params_path)
    except TruError as err:  # the batch stands; the consolidation waits for the next trigger or a person
        logger.warning(f"consolidation not run: {err}")
        done = {"status": "error", "message": str(err)}
    return {"reasons": reasons, **done}


def _review_name() -> str:
    """The review run's name until its batch is known."""
    return f"erasure-review-starting-{_stamp()}"


@flow(name="erasure-review", log_prints=True, flow_run_name=_review_name)
def erasure_review(batch: str | None = None, params_path: str = "params.yaml", wait_for_lock: float = 0) -> dict:
    """Clear the batch the audit gate refused (default: the one awaiting review), so the queue
    moves on: erase it by an exact retrain (batches.yaml records `method: retrain`), then its
    stages from the erasure to the evidence PDF, as tasks, each recorded in dvc.lock; only this
    batch's stages run (tru.nightly.start_review, run_batch_stages: `tru review` runs the same
    steps without Prefect). A killed review resumes, by this flow or by the next nightly run.
    The next nightly run takes the requests waiting in the inbox.

    Named `erasure-review-<batch>`, tagged `review` and the gate's verdict."""
    logs.configure()
    logger = get_run_logger()
    try:
        with run_lock("erasure-review flow", wait=wait_for_lock):
            nightly.check_signing_key()
            batch_id, changed = nightly.start_review(batch, params_path)
            _label_run(f"erasure-review-{batch_id}", "review")
            if changed:
                logger.warning(
                    f"params changed since batch {batch_id} ran; the retrain uses them as they are now: "
                    + ", ".join(changed)
                )
            logger.info(f"batch {batch_id}: erasing it by an exact retrain (batches.yaml: method retrain)")
            seconds: dict[str, float] = {}
            done, skipped = _batch_stages(params_path, batch_id, None, logger, seconds)
            summary = _artifacts(batch_id, None, done, skipped)
            _label_run(tag=summary["verdict"] if summary["verdict"] in ("pass", "fail", "inconclusive") else None)
            _log_summary(logger, summary)
            if batches.gate_verdict(batch_id) == "pass":  # promoted (an inconclusive one by its policy)
                summary["lineage"] = finish_task(params_path, batch_id)
            waiting = len(list(paths.INBOX.iterdir())) if paths.INBOX.is_dir() else 0
            logger.info(f"the queue moves on: the next nightly run takes the {waiting} file(s) waiting in the inbox")
            return {"status": "cleared", **summary, "seconds": {k: round(v, 3) for k, v in seconds.items()}}
    except RunLocked as err:
        _label_run(f"erasure-review-locked-{_stamp()}", "noop")
        logger.warning(str(err))
        return {"status": "locked", "message": str(err)}
    except TruError as err:
        _label_run(tag="error")
        if logs.verbose():
            logger.error(f"{type(err).__name__}: {err}", exc_info=err)
        return Failed(message=str(err), data=err)  # type: ignore[return-value]


def _blocked_artifact(batch_id: str) -> None:
    """What a blocked run leaves in the UI: the batch that blocks the queue, why, and what clears it."""
    audit = paths.report_dir(batch_id) / "audit.json"
    failed = ", ".join(read_json(audit).get("failed") or []) if audit.is_file() else "not audited"
    waiting = sorted(p.name for p in paths.INBOX.iterdir()) if paths.INBOX.is_dir() else []
    create_markdown_artifact(
        "\n".join(
            [
                f"# Erasure queue blocked by batch `{batch_id}`",
                "",
                f"Its audit gate refused the erasure (failed: {failed}); nothing new is erased until it is cleared.",
                f"{len(waiting)} request file(s) wait in the inbox.",
                "",
                "Clear it with an exact retrain of the batch (only its stages rerun; earlier batches stay):",
                "",
                f"- the deployment: `prefect deployment run {nightly.REVIEW_DEPLOYMENT} --param batch={batch_id}`",
                f"- or the command: `{nightly.REVIEW_COMMAND.format(batch=batch_id)}`",
                "",
                "The next nightly run then takes the waiting requests.",
            ]
        ),
        key="erasure-summary",
        description=f"blocked: batch {batch_id} awaits review",
    )


def _run(params_path: str, inbox: str | None, logger, batch_time: str | None, run: dict[str, str | None]) -> dict:
    nightly.check_signing_key()  # before anything is erased: a batch is never left unsigned
    seconds: dict[str, float] = {}  # wall-clock per step, returned (never written into the batch's files)
    t = time.perf_counter()
    recovered = recover_task(params_path)
    seconds["recover"] = time.perf_counter() - t
    if any(recovered.values()):
        logger.info(f"recovered after an interrupted run: {recovered}")
    batch_id = nightly.unfinished_batch()  # raises AwaitingReview: the flow fails, visibly
    if batch_id is not None:
        run["batch"] = batch_id
        _label_run(f"erasure-{batch_id}")
        logger.info(f"resuming batch {batch_id} (a previous run did not finish it)")
        if batch_time is not None:
            logger.warning(f"batch time {batch_time} not used: the inbox waits until batch {batch_id} is finished")
        ingested = None
    else:
        t = time.perf_counter()
        ingested = ingest_task(params_path, inbox, batch_time)
        seconds["ingest"] = time.perf_counter() - t
        batch_id = ingested["batch_id"]
        if batch_id is None:
            _label_run(f"erasure-noop-{_stamp()}", "noop")
            create_markdown_artifact(
                "# Nothing to erase\n\nThe inbox (`data/deletions/inbox/`) is empty; nothing was changed.\n\n"
                f"Current model: `{batches.current_model()}`.",
                key="erasure-summary",
                description="empty inbox",
            )
            logger.info("nothing to erase: the inbox is empty")
            return {"status": "empty", "batch": None}
        run["batch"] = batch_id
        _label_run(f"erasure-{batch_id}")
        t = time.perf_counter()
        dvc_add_task(batch_id)
        seconds["dvc_add"] = time.perf_counter() - t

    done, skipped = _batch_stages(params_path, batch_id, ingested, logger, seconds)
    summary = _artifacts(batch_id, ingested, done, skipped)
    _label_run(tag=summary["verdict"] if summary["verdict"] in ("pass", "fail", "inconclusive") else None)
    _log_summary(logger, summary)
    if batches.gate_verdict(batch_id) == "pass":  # promoted (an inconclusive one by its policy)
        t = time.perf_counter()
        summary["lineage"] = finish_task(params_path, batch_id)
        seconds["sign_and_record"] = time.perf_counter() - t
    return {"status": "erased", **summary, "seconds": {k: round(v, 3) for k, v in seconds.items()}}


def _batch_stages(
    params_path: str, batch_id: str, ingested: dict | None, logger, seconds: dict[str, float]
) -> tuple[list[str], list[str]]:
    """The batch's stages as tasks, each recorded in dvc.lock after it ran, the ones already
    recorded skipped (tru.nightly.run_batch_stages); returns the stages run and skipped. A
    refusal of the gate: the summary, then AuditGateFailed naming the model that stays."""
    done: list[str] = []
    skipped: list[str] = []
    # the run's progress in the UI: the share of the batch's stages finished
    progress = cast(UUID, create_progress_artifact(0.0, description=f"batch {batch_id}: stages finished"))

    def advance() -> None:
        share = 100.0 * (len(done) + len(skipped)) / len(nightly.BATCH_STAGES)
        update_progress_artifact(progress, share)

    def run(stage: str) -> None:
        done.append(stage)
        t = time.perf_counter()
        STAGE_TASKS[stage](params_path, batch_id)
        seconds[stage] = time.perf_counter() - t

    def commit(target: str) -> None:
        t = time.perf_counter()
        dvc_commit_task(target)
        seconds[f"dvc_commit_{target.split('@')[0]}"] = time.perf_counter() - t
        advance()

    def skip(target: str) -> None:
        skipped.append(target.split("@")[0])
        logger.info(f"{target}: up to date in dvc.lock, skipped")
        advance()

    try:
        nightly.run_batch_stages(batch_id, run, commit, skip)
    except AuditGateFailed as err:
        summary = _artifacts(batch_id, ingested, done, skipped)
        _log_summary(logger, summary)
        raise AuditGateFailed(f"{err} (the current model stays {batches.current_model()})") from None
    return done, skipped


# --- what a person sees in the Prefect UI --------------------------------------------------


def _log_summary(logger, summary: dict) -> None:
    """The batch in the flow run's log, a few lines: the verdict and the requests, the failed
    checks, retain and forget Recall@20 before and after, the steps, the model and the PDF (the
    gate's every check is in the audit-gate task's log)."""
    b = summary["batch"]
    rep = paths.report_dir(b)
    audit = read_json(rep / "audit.json") if (rep / "audit.json").is_file() else {}
    metrics = read_json(rep / "metrics.json") if (rep / "metrics.json").is_file() else {}
    requests = ", ".join(f"{s} {n}" for s, n in summary["requests"].items()) or "none"
    failed = audit.get("failed") or []
    logger.info(
        f"batch {b}: audit gate {str(summary['verdict']).upper()}"
        + (f" (failed: {', '.join(failed)})" if failed else "")
        + f"; requests: {requests}"
    )
    models = [m for m in ("original", "unlearned", "retrain") if m in metrics]
    for split in ("retain", "forget"):
        values = [f"{m} {_fmt(metrics[m][split]['recall@20'])}" for m in models]
        if values:
            logger.info(f"{split} Recall@20: " + ", ".join(values))
    logger.info(
        f"steps run: {', '.join(summary['ran']) or 'none'}; already done: {', '.join(summary['skipped']) or 'none'}"
    )
    logger.info(f"current model: {batches.current_model()}; evidence PDF: {summary['pdf'] or 'none'}")


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("—" if v is None else str(v))


def _artifacts(batch_id: str, ingested: dict | None, done: list[str], skipped: list[str]) -> dict:
    """The Prefect artifacts of a batch (metrics table, summary, link to the PDF); its summary."""
    rep = paths.report_dir(batch_id)
    audit = read_json(rep / "audit.json") if (rep / "audit.json").is_file() else {}
    metrics = read_json(rep / "metrics.json") if (rep / "metrics.json").is_file() else {}
    ledger = read_ledger(paths.LEDGER, columns=["batch_id", "status"])
    counts = ledger[ledger["batch_id"] == batch_id]["status"].value_counts().sort_index().to_dict()
    verdict = audit.get("verdict", "not audited")
    pdf = rep / "evidence.pdf"

    rows = []
    for model in ("original", "unlearned", "retrain"):
        if model in metrics:
            m = metrics[model]
            rows.append(
                {
                    "model": model,
                    "retain recall@20": m["retain"]["recall@20"],
                    "retain ndcg@20": m["retain"]["ndcg@20"],
                    "forget recall@20": m["forget"]["recall@20"],
                    "forget ndcg@20": m["forget"]["ndcg@20"],
                }
            )
    if rows:
        create_table_artifact(rows, key="erasure-metrics", description=f"batch {batch_id}: retain and forget metrics")

    lines = [
        f"# Erasure batch `{batch_id}`: audit gate **{str(verdict).upper()}**",
        "",
        "| requests | count |",
        "|---|---|",
        *[f"| {s} | {n} |" for s, n in counts.items()],
        "",
    ]
    if audit.get("checks"):
        lines += ["| check | value | limit | result |", "|---|---|---|---|"]
        for c in audit["checks"]:
            lines.append(
                f"| {c['name']} | {_fmt(c['value'])} | {c['op']} {_fmt(c['threshold'])} | "
                f"{ {True: 'pass', False: '**FAIL**'}.get(c.get('passed'), 'not judged: ' + c.get('note', 'n/a')) } |"
            )
        lines.append("")
    if rows:
        lines += [
            "| model | retain R@20 | forget R@20 |",
            "|---|---|---|",
            *[f"| {r['model']} | {_fmt(r['retain recall@20'])} | {_fmt(r['forget recall@20'])} |" for r in rows],
            "",
        ]
    lines += [
        f"Steps run: {', '.join(done) or 'none'}; already done (skipped): {', '.join(skipped) or 'none'}.",
        f"Current model: `{batches.current_model()}`.",
    ]
    if verdict == "inconclusive":
        lines.append(f"\n**Inconclusive**: {audit.get('basis')}.")
    if batches.gate_verdict(batch_id) == "fail":
        failed = ", ".join(audit.get("failed", [])) or "none (inconclusive, held by audit.gate.inconclusive: review)"
        lines.append(
            f"\n**Needs review**: the failed checks are {failed}. "
            f"Clear the batch with the deployment `{nightly.REVIEW_DEPLOYMENT}` or "
            f"`{nightly.REVIEW_COMMAND.format(batch=batch_id)}` (an exact retrain of the batch)."
        )
    if pdf.is_file():
        # a browser refuses file:// links from the UI: the link goes to the evidence portal
        # (`tru portal` / `make portal`; TRU_PORTAL_URL where it runs elsewhere), which serves the
        # PDF with its verification badge
        portal = os.environ.get("TRU_PORTAL_URL", f"http://127.0.0.1:{DEFAULT_PORT}").rstrip("/")
        lines.append(f"\nEvidence PDF: `{pdf}`; in the evidence portal: {portal}/batches/{batch_id}")
        create_link_artifact(
            f"{portal}/batches/{batch_id}/evidence.pdf",
            link_text=f"evidence.pdf of {batch_id} (evidence portal)",
            key="evidence-pdf",
            description="the compliance evidence of the batch, served by `tru portal`",
        )
    create_markdown_artifact("\n".join(lines), key="erasure-summary", description=f"batch {batch_id}")
    return {
        "batch": batch_id,
        "verdict": verdict,
        "requests": counts,
        "ran": done,
        "skipped": skipped,
        "pdf": str(pdf) if pdf.is_file() else None,
        "ingested_rows": None if ingested is None else ingested.get("rows"),
    }


if __name__ == "__main__":
    erasure_batch()
