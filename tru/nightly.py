"""What the nightly erasure run decides before and between its steps; the Prefect flow
(flows/erasure.py) and the `tru` CLI share it. The steps themselves are tru.stages.

A batch is done when every one of its DVC stages is recorded in dvc.lock and unchanged, so a
run that was killed anywhere resumes where it stopped: finished stages are skipped (DVC says
they are up to date), an interrupted one reruns from its inputs (its outputs only ever
appear by a completed rename), and the ledger's events are written once.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tru import batches, paths
from tru.dvcio import dvc_add, dvc_repro, stage_changes
from tru.errors import TruError
from tru.io import sweep_temporaries
from tru.requests.inbox import finish_interrupted_moves
from tru.requests.ledger import batch_ids, requests_path
from tru.runlock import run_lock

# The per-batch stages of dvc.yaml, in order; dvc.yaml names them `<stage>@<position>`.
BATCH_STAGES = ("sets", "map", "erase", "repair", "evaluate_batch", "audit", "report")


class AwaitingReview(TruError):
    """The last batch failed its audit gate: nothing new is erased until a person clears it."""

    exit_code = 4


def dvc_stage(stage: str, batch_id: str, batches_file: str | Path = paths.BATCHES_FILE) -> str:
    """DVC's name for a batch stage: `<stage>@<position of the batch in batches.yaml>`."""
    ids = [b["id"] for b in batches.read_batches(batches_file)]
    return f"{stage}@{ids.index(batch_id)}"


def dvc_pointers(batch_id: str) -> list[Path]:
    """What `tru ingest` versions with `dvc add`: the archived inputs and the batch's requests."""
    return [paths.input_dir(batch_id), requests_path(paths.LEDGER, batch_id)]


def recover(method: str, batches_file: str | Path = paths.BATCHES_FILE) -> dict:
    """Repair what a killed run can leave behind, before anything else reads the state:
    temporary folders of unfinished writes, inbox files whose batch was recorded but not yet
    archived, batches in the ledger that were never registered, inputs not yet `dvc add`ed."""
    swept = sweep_temporaries(paths.BATCH_DATA, paths.LEDGER, paths.ARCHIVE, paths.REPORTS)
    moved = finish_interrupted_moves(paths.INBOX, paths.ARCHIVE, paths.LEDGER) if paths.LEDGER.is_dir() else []
    registered = {b["id"] for b in batches.read_batches(batches_file)}
    orphans = [b for b in (batch_ids(paths.LEDGER) if paths.LEDGER.is_dir() else []) if b not in registered]
    for b in sorted(orphans):
        batches.register_batch(b, batches_file, model_of=batches.promoted_model, method=method)
    unversioned = [
        p
        for b in batches.read_batches(batches_file)
        for p in dvc_pointers(b["id"])
        if p.exists() and not Path(f"{p}.dvc").is_file()
    ]
    if unversioned and Path(".dvc").is_dir():
        dvc_add(unversioned)
    return {"swept": swept, "moved": moved, "registered": sorted(orphans), "dvc_added": [str(p) for p in unversioned]}


def unfinished_batch(batches_file: str | Path = paths.BATCHES_FILE) -> str | None:
    """The last batch when it is not done yet (a run was killed, or never ran its stages).

    Raises AwaitingReview when it failed its audit gate and nobody cleared it."""
    registered = batches.read_batches(batches_file)
    if not registered:
        return None
    last = registered[-1]["id"]
    verdict = batches.gate_verdict(last)
    if verdict == "fail":
        raise AwaitingReview(
            f"batch {last} failed its audit gate and awaits review: clear it with "
            f"`tru erase --batch {last} --method retrain`; new requests wait in the inbox"
        )
    if verdict is None or not recorded(dvc_stage("report", last, batches_file)):
        return last
    return None


def recorded(target: str, lock_file: str | Path = "dvc.lock") -> bool:
    """Whether dvc.lock holds the stage at all. A finished batch is one whose last stage is
    recorded; one whose stages went stale since (the code changed) is not rerun by the
    nightly run: re-erasing an audited batch is a deliberate `dvc repro`, never a side effect."""
    path = Path(lock_file)
    if not path.is_file():
        return False
    return target in ((yaml.safe_load(path.read_text()) or {}).get("stages") or {})


def stage_changed(target: str) -> bool:
    """Whether `dvc status` reports the stage as changed (or not recorded)."""
    return bool(stage_changes(target))


def needs_retrain_fallback(batch_id: str) -> bool:
    """Whether `tru erase --method retrain` on `batch_id` is the fallback for a refused batch:
    its audit gate failed and it was not already erased by retraining."""
    return batches.gate_verdict(batch_id) == "fail" and batches.batch_entry(batch_id).get("method") != "retrain"


def retrain_fallback(batch_id: str) -> str | None:
    """Clear a batch the audit gate refused: record `method: retrain` for it in batches.yaml
    and rerun its stages through DVC (under the run lock). Returns the new gate verdict."""
    with run_lock(f"retrain fallback of {batch_id}"):
        batches.set_method(batch_id, "retrain")
        # the batch's stages from map to report (its sets do not depend on the method)
        dvc_repro([dvc_stage("map", batch_id), dvc_stage("report", batch_id)])
    return batches.gate_verdict(batch_id)
