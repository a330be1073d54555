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

Run once: `tru nightly` (an ephemeral Prefect server unless PREFECT_API_URL names one);
on a schedule: `tru serve` / `make serve` (flows/deployments.py).
"""

from __future__ import annotations

import time

from prefect import Task, flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from tasks.erasure import audit_task, erase_task, evaluate_batch_task, repair_task, report_task
from tasks.requests import ingest_task, map_task, sets_task
from tru import batches, nightly, paths
from tru.config import load_params
from tru.dvcio import dvc_add, dvc_commit
from tru.errors import AuditGateFailed
from tru.io import read_json
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


@task(name="dvc-add-inputs", retries=2, retry_delay_seconds=5)
def dvc_add_task(batch_id: str) -> list[str]:
    """Version the batch's archived inputs and requests (retried: DVC's own lock may be busy);
    returns the .dvc files written."""
    pointers = nightly.dvc_pointers(batch_id)
    dvc_add(pointers)
    return [f"{p}.dvc" for p in pointers]


@task(name="dvc-commit", retries=2, retry_delay_seconds=5)
def dvc_commit_task(target: str) -> str:
    """Record one finished stage `target` in dvc.lock (retried: DVC's own lock may be busy);
    returns `target`."""
    dvc_commit([target])
    return target


@flow(name="erasure-batch", log_prints=True)
def erasure_batch(
    params_path: str = "params.yaml", inbox: str | None = None, wait_for_lock: float = 0, batch_time: str | None = None
) -> dict:
    """Erase one deletion batch: the unfinished one if a run was interrupted, else the inbox,
    as a batch named by `batch_time` (ISO 8601, UTC unless it has an offset; default: now).
    The batch id seeds the erasure: a fixed time replays an inbox to the same bytes."""
    logger = get_run_logger()
    try:
        with run_lock("erasure-batch flow", wait=wait_for_lock):
            return _run(params_path, inbox, logger, batch_time)
    except RunLocked as err:
        logger.warning(str(err))
        create_markdown_artifact(
            f"# Erasure run skipped\n\n{err}", key="erasure-summary", description="another run holds the lock"
        )
        return {"status": "locked", "message": str(err)}


def _run(params_path: str, inbox: str | None, logger, batch_time: str | None = None) -> dict:
    seconds: dict[str, float] = {}  # wall-clock per step, returned (never written into the batch's files)
    t = time.perf_counter()
    recovered = recover_task(params_path)
    seconds["recover"] = time.perf_counter() - t
    if any(recovered.values()):
        logger.info(f"recovered after an interrupted run: {recovered}")
    batch_id = nightly.unfinished_batch()  # raises AwaitingReview: the flow fails, visibly
    if batch_id is not None:
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
            create_markdown_artifact(
                "# Nothing to erase\n\nThe inbox (`data/deletions/inbox/`) is empty; nothing was changed.\n\n"
                f"Current model: `{batches.current_model()}`.",
                key="erasure-summary",
                description="empty inbox",
            )
            print("nothing to erase: the inbox is empty")
            return {"status": "empty", "batch": None}
        t = time.perf_counter()
        dvc_add_task(batch_id)
        seconds["dvc_add"] = time.perf_counter() - t

    done, skipped = [], []
    try:
        for stage in nightly.BATCH_STAGES:
            target = nightly.dvc_stage(stage, batch_id)
            if not nightly.stage_changed(target):
                skipped.append(stage)
                logger.info(f"{target}: up to date in dvc.lock, skipped")
                continue
            t = time.perf_counter()
            STAGE_TASKS[stage](params_path, batch_id)
            seconds[stage] = time.perf_counter() - t
            t = time.perf_counter()
            dvc_commit_task(target)
            seconds[f"dvc_commit_{stage}"] = time.perf_counter() - t
            done.append(stage)
    except AuditGateFailed as err:
        _artifacts(batch_id, ingested, done, skipped)
        raise AuditGateFailed(
            f"{err} (requests are needs_review; the current model stays {batches.current_model()})"
        ) from None
    summary = _artifacts(batch_id, ingested, done, skipped)
    print(f"batch {batch_id}: audit gate {summary['verdict'].upper()}; evidence PDF {summary['pdf']}")
    return {"status": "erased", **summary, "seconds": {k: round(v, 3) for k, v in seconds.items()}}


# --- what a person sees in the Prefect UI --------------------------------------------------


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
    if verdict == "fail":
        lines.append(
            f"\n**Needs review**: the failed checks are {', '.join(audit.get('failed', []))}. "
            f"Clear the batch with `tru erase --batch {batch_id} --method retrain`."
        )
    if pdf.is_file():
        lines.append(f"\nEvidence PDF: `{pdf}`")
        create_link_artifact(
            pdf.resolve().as_uri(),
            link_text=f"evidence.pdf of {batch_id}",
            key="evidence-pdf",
            description="the compliance evidence of the batch",
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
