"""What the nightly erasure run decides before and between its steps; the Prefect flow
(flows/erasure.py) and the `tru` CLI share it. The steps themselves are tru.stages.

A batch is done when every one of its DVC stages is recorded in dvc.lock and unchanged, so a
run that was killed anywhere resumes where it stopped: finished stages are skipped (DVC says
they are up to date), an interrupted one reruns from its inputs (its outputs only ever
appear by a completed rename), and the ledger's events are written once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from tru import batches, lineage, paths
from tru.dvcio import dvc_add, dvc_commit, stage_changes
from tru.errors import DataError, TruError
from tru.io import sweep_temporaries
from tru.requests.backdoors import backdoors_path
from tru.requests.inbox import finish_interrupted_moves
from tru.requests.ledger import batch_ids, requests_path
from tru.runlock import run_lock

if TYPE_CHECKING:
    from tru.config import LineageParams, Params

# The per-batch stages of dvc.yaml, in order; dvc.yaml names them `<stage>@<position>`.
BATCH_STAGES = ("sets", "map", "erase", "repair", "evaluate_batch", "audit", "report")


class AwaitingReview(TruError):
    """The last batch failed its audit gate: nothing new is erased until a person clears it
    (`batch`: which one)."""

    exit_code = 4

    def __init__(self, batch: str) -> None:
        super().__init__(
            f"batch {batch} failed its audit gate and awaits review: {how_to_clear(batch)}; "
            "new requests wait in the inbox"
        )
        self.batch = batch


# how a person clears a refused batch: the command, and the Prefect deployment `tru serve` registers
REVIEW_COMMAND = "tru review --batch {batch}"
REVIEW_DEPLOYMENT = "erasure-review/review"


def how_to_clear(batch_id: str) -> str:
    """The one sentence that says how to clear a refused batch (an exact retrain of it)."""
    return (
        f"clear it with `{REVIEW_COMMAND.format(batch=batch_id)}` (an exact retrain of the batch), or run the "
        f"deployment `prefect deployment run {REVIEW_DEPLOYMENT} --param batch={batch_id}`"
    )


def dvc_stage(stage: str, batch_id: str, batches_file: str | Path = paths.BATCHES_FILE) -> str:
    """DVC's name for a batch stage: `<stage>@<position of the batch in batches.yaml>`."""
    ids = [b["id"] for b in batches.read_batches(batches_file)]
    return f"{stage}@{ids.index(batch_id)}"


def dvc_pointers(batch_id: str) -> list[Path]:
    """What `tru ingest` versions with `dvc add`: the archived inputs, the batch's requests and,
    when the batch came with one, its backdoor declaration's record."""
    declared = backdoors_path(paths.LEDGER, batch_id)
    return [paths.input_dir(batch_id), requests_path(paths.LEDGER, batch_id)] + (
        [declared] if declared.is_file() else []
    )


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
    """The last batch when it is not done yet (a run was killed, or never ran its stages, or a
    retrain that clears a refused batch was killed: it resumes too, to a verdict).

    Raises AwaitingReview when it failed its audit gate and nobody cleared it."""
    registered = batches.read_batches(batches_file)
    if not registered:
        return None
    last = registered[-1]
    verdict = batches.gate_verdict(last["id"])
    if verdict == "fail":
        if last.get("method") == "retrain":  # a clearing retrain that did not finish
            return last["id"]
        raise AwaitingReview(last["id"])
    if verdict is None or not recorded(dvc_stage("report", last["id"], batches_file)):
        return last["id"]
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


def run_batch_stages(
    batch_id: str,
    run: Callable[[str], object],
    commit: Callable[[str], object],
    skipped: Callable[[str], object] | None = None,
    batches_file: str | Path = paths.BATCHES_FILE,
) -> tuple[list[str], list[str]]:
    """Bring batch `batch_id` up to date, stage by stage, in order: a stage recorded in dvc.lock
    and unchanged is skipped (`skipped(target)`), any other is run (`run(stage)`) and recorded
    (`commit(target)`: `dvc commit` of the files it wrote). Only this batch's stages: the
    batches before it and their evidence are never touched. The nightly flow passes its
    Prefect tasks, the CLI the stage functions. Returns the stages run and skipped."""
    done: list[str] = []
    not_run: list[str] = []
    for stage in BATCH_STAGES:
        target = dvc_stage(stage, batch_id, batches_file)
        if not stage_changed(target):
            not_run.append(stage)
            if skipped is not None:
                skipped(target)
            continue
        run(stage)
        commit(target)
        done.append(stage)
    return done, not_run


def stage_functions() -> dict[str, Callable[[Params, str], dict]]:
    """The batch stages' functions (tru.stages), by stage name: what `dvc repro` runs through
    the `tru` commands and the flow through its tasks."""
    from tru.stages.audit import audit_stage  # why: each loads torch and the models; only a run needs them
    from tru.stages.components import map_stage
    from tru.stages.erase import erase_stage
    from tru.stages.evaluate_batch import evaluate_batch_stage
    from tru.stages.repair import repair_stage
    from tru.stages.report import report_stage
    from tru.stages.sets import sets_stage

    return {
        "sets": sets_stage,
        "map": map_stage,
        "erase": erase_stage,
        "repair": repair_stage,
        "evaluate_batch": evaluate_batch_stage,
        "audit": audit_stage,
        "report": report_stage,
    }


def clearable_batch(batches_file: str | Path = paths.BATCHES_FILE) -> str | None:
    """The batch a review clears: the last one when its gate refused it, or when a clearing
    retrain of it was killed after its audit passed (not refused any more, not finished yet);
    None when the queue is not blocked."""
    registered = batches.read_batches(batches_file)
    if not registered:
        return None
    last = registered[-1]
    refused = batches.gate_verdict(last["id"]) == "fail"
    resuming = last.get("method") == "retrain" and not recorded(dvc_stage("report", last["id"], batches_file))
    return last["id"] if refused or resuming else None


def start_review(batch_id: str | None, params_file: str | Path = "params.yaml") -> tuple[str, list[str]]:
    """Prepare the clearing of a refused batch (default: the one awaiting review): record
    `method: retrain` for it in batches.yaml, so its erase stage (and the stages after it) is
    out of date and `run_batch_stages` reruns exactly those. Returns the batch and the
    params that differ from what its refused run recorded in dvc.lock (the rerun uses, and
    dvc.lock then records, params.yaml as it is now: a person may have changed it on purpose).

    DataError when there is nothing to clear: no batch, a batch that is not the last one,
    or one that passed its gate (a clearing retrain killed after its audit is resumed)."""
    clearable = clearable_batch()
    batch_id = batch_id or clearable
    if batch_id is None:
        raise DataError("no batch awaits review: the last batch passed its audit gate (or there is none)")
    batches.batch_entry(batch_id)  # an unknown batch: DataError naming the known ones
    if batch_id != clearable:
        verdict = batches.gate_verdict(batch_id)
        state = "passed its audit gate" if verdict == "pass" else "has not been audited yet"
        raise DataError(
            f"batch {batch_id} {state}: only a batch the gate refused is cleared by a review"
            + (f" (the one awaiting review is {clearable})" if clearable else "")
        )
    batches.set_method(batch_id, "retrain")
    return batch_id, changed_params(batch_id, params_file)


def changed_params(
    batch_id: str, params_file: str | Path = "params.yaml", lock_file: str | Path = "dvc.lock"
) -> list[str]:
    """The params (dotted keys) of the batch's stages whose value in `params_file` differs from
    the one its last run recorded in dvc.lock."""
    path = Path(lock_file)
    lock = (yaml.safe_load(path.read_text()) or {}).get("stages", {}) if path.is_file() else {}
    now = yaml.safe_load(Path(params_file).read_text()) or {}
    changed: set[str] = set()
    for stage in BATCH_STAGES:
        recorded_params = (lock.get(dvc_stage(stage, batch_id)) or {}).get("params", {}).get(str(params_file), {})
        for key, value in recorded_params.items():
            changed.update(_differences(key, value, _lookup(now, key)))
    return sorted(changed)


def _lookup(tree: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _differences(key: str, old, new) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new)) for d in _differences(f"{key}.{k}", old.get(k), new.get(k))]
    return [] if old == new else [key]


def clear_by_retrain(batch_id: str | None, params_file: str | Path = "params.yaml", echo=print) -> str | None:
    """Clear a refused batch (`tru review`; the Prefect flow `erasure-review` runs the same steps
    as tasks): `start_review`, then the batch's stages from the erasure on, under the run lock.
    A killed clearing resumes: its rerun finds `method: retrain` recorded and the finished
    stages up to date. Returns the new gate verdict."""
    from tru.config import load_params  # why: pydantic models; the nightly helpers above do not need them

    check_signing_key()
    with run_lock("retrain of a refused batch"):
        batch_id, changed = start_review(batch_id, params_file)
        if changed:
            echo(
                f"note: params changed since batch {batch_id} ran; the retrain uses them as they are now: "
                + ", ".join(changed)
            )
        params = load_params(params_file)
        functions = stage_functions()

        def run(stage: str) -> None:
            echo(f"{dvc_stage(stage, batch_id)}: running")
            functions[stage](params, batch_id)

        run_batch_stages(batch_id, run, lambda target: dvc_commit([target]))
        verdict = batches.gate_verdict(batch_id)
        if verdict == "pass":
            finish_batch(batch_id, params.lineage, echo)
    return verdict


def check_signing_key() -> None:
    """ConfigError (one line, with the fix) when the evidence signing key is missing: checked
    before a run erases anything, so a batch is never erased and left unsigned."""
    from tru.evidence.signing import load_private_key  # why: cryptography, for the runs only

    load_private_key()


def finish_batch(batch_id: str, settings: LineageParams, echo=print) -> dict:
    """After a batch passed its gate: sign its evidence (tru.evidence.signing), then record its
    lineage (`record_lineage`, the signature with it). Returns what was done."""
    from tru.evidence import signing  # why: cryptography, for the runs only

    signed = signing.sign(batch_id)
    echo(f"evidence signed: {signed['statement']}, key {signed['fingerprint'][:16]}…")
    return {"signed": signed["fingerprint"], **record_lineage(batch_id, settings, echo)}


def record_lineage(batch_id: str, settings: LineageParams, echo=print) -> dict:
    """`tru.lineage.record` as params.yaml's `lineage` says, each outcome a line to `echo`."""
    audit = paths.report_dir(batch_id) / "audit.json"
    verdict = json.loads(audit.read_text()).get("verdict", "pass") if audit.is_file() else "pass"
    if verdict == "inconclusive":  # promoted by its policy: the commit says what the evidence says
        verdict = "inconclusive, promoted by policy"
    out = lineage.record(batch_id, verdict, settings.commit, settings.branch, settings.push)
    if out["pushed"] is not None:
        echo(f"dvc push: {out['pushed']} object(s) sent to the default DVC remote")
    if out["commit"]:
        echo(f"lineage committed in git: {out['commit'][:12]}")
    for note in out["notes"]:
        echo(f"warning: lineage not recorded: {note} (`tru lineage` records it once fixed)")
    return out
