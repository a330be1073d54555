"""The batch registry (`batches.yaml`): which deletion batches exist, in order, and what each
starts from. dvc.yaml loops over it (`foreach`), so `dvc repro` rebuilds batch N from
batch N-1; the nightly run appends to it. Tracked by git: it is lineage.

The layout per batch derives from its id (tru/paths.py).

Promotion: a batch's model (data/batches/B/model) becomes the current model only when its
audit gate passed (reports/B/audit.json). The next batch starts from it; while the last batch
has not passed, no new batch is registered (its requests wait in the inbox).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tru.errors import DataError
from tru.io import atomic_path
from tru.paths import BASE_MODEL, BATCH_DATA, BATCHES_FILE, SPLIT, report_dir, sets_dir

HEADER = (
    "# Deletion batches, oldest first; written by `tru ingest`, read by dvc.yaml (foreach).\n"
    "# Each batch starts from the sets (`prior`) and model (`base_model`) its predecessor left.\n"
)


def read_batches(path: str | Path = BATCHES_FILE) -> list[dict]:
    """The registered batches, oldest first (an absent file: none). DataError on a malformed file."""
    path = Path(path)
    if not path.is_file():
        return []
    data = yaml.safe_load(path.read_text()) or {}
    batches = data.get("batches") or []
    if not isinstance(batches, list) or not all(isinstance(b, dict) and "id" in b for b in batches):
        raise DataError(f"{path}: `batches` must be a list of mappings with an `id`")
    return batches


def batch_entry(batch_id: str, path: str | Path = BATCHES_FILE) -> dict:
    """Batch `batch_id`'s entry (id, prior, base_model, method); DataError naming the known ids."""
    for b in read_batches(path):
        if b["id"] == batch_id:
            return b
    known = ", ".join(b["id"] for b in read_batches(path)) or "none"
    raise DataError(f"{path}: no batch {batch_id!r} (known: {known})")


def gate_verdict(batch_id: str, root: Path = Path(".")) -> str | None:
    """The gate's outcome for the queue, from the batch's audit.json: 'pass' (promoted) or
    'fail' (held for review); an INCONCLUSIVE verdict is either, as its policy decided
    (`audit.gate.inconclusive`, recorded as `promoted`). None when it has not been audited."""
    path = root / report_dir(batch_id) / "audit.json"
    if not path.is_file():
        return None
    audit = json.loads(path.read_text())
    if audit.get("verdict") == "inconclusive":
        return "pass" if audit.get("promoted") else "fail"
    return audit.get("verdict")


def promoted_model(batch_id: str) -> str:
    """The model batch `batch_id` promotes when its gate passes (a path relative to the root)."""
    return (BATCH_DATA / batch_id / "model").as_posix()


def current_model(path: str | Path = BATCHES_FILE) -> str:
    """The model now serving: the model of the last batch whose audit gate passed, else the base."""
    current = BASE_MODEL.as_posix()
    for b in read_batches(path):
        if gate_verdict(b["id"]) == "pass":
            current = promoted_model(b["id"])
    return current


def check_ready_for_next(path: str | Path = BATCHES_FILE) -> None:
    """Raise DataError unless the last batch passed its audit gate (one batch at a time)."""
    batches = read_batches(path)
    if not batches:
        return
    last = batches[-1]["id"]
    verdict = gate_verdict(last)
    if verdict == "fail":
        raise DataError(
            f"batch {last} failed its audit gate and awaits review: clear it with "
            f"`tru review --batch {last}` (an exact retrain of the batch; new requests stay in the inbox)"
        )
    if verdict is None:
        raise DataError(
            f"batch {last} has not been audited yet: run `dvc repro` first (new requests stay in the inbox)"
        )


def set_method(batch_id: str, method: str, path: str | Path = BATCHES_FILE) -> dict:
    """Change the unlearning method of a registered batch (the retrain fallback)."""
    batches = read_batches(path)
    for b in batches:
        if b["id"] == batch_id:
            b["method"] = method
            write_batches(batches, path)
            return b
    raise DataError(f"{path}: no batch {batch_id!r}")


def register_batch(batch_id: str, path: str | Path = BATCHES_FILE, model_of=None, method: str = "tru") -> dict:
    """Append batch `batch_id` to the registry; it starts where the last batch ended, and is
    erased with `method` (recorded, so `dvc repro` of an old batch uses what it used).

    `model_of(batch_id)` names the model a finished batch promoted (None: the last batch's
    own base model carries on)."""
    batches = read_batches(path)
    check_newer(batch_id, path, batches)
    prior = sets_dir(batches[-1]["id"]).as_posix() if batches else SPLIT.as_posix()
    base_model = (model_of(batches[-1]["id"]) if batches and model_of else None) or (
        batches[-1]["base_model"] if batches else BASE_MODEL.as_posix()
    )
    entry = {"id": batch_id, "prior": prior, "base_model": base_model, "method": method}
    write_batches(batches + [entry], path)
    return entry


def check_newer(batch_id: str, path: str | Path = BATCHES_FILE, batches: list[dict] | None = None) -> None:
    """Raise DataError unless `batch_id` would be the newest batch of the registry. Ids are
    times and the registry's order is the order batches build on each other: a batch time at
    or before the last batch's (a clock set back, or `--batch-time`) must be refused before
    anything is ingested."""
    batches = read_batches(path) if batches is None else batches
    if batches and batch_id <= batches[-1]["id"]:
        raise DataError(f"batch {batch_id} is not newer than the last batch {batches[-1]['id']}")
    if any(b["id"] == batch_id for b in batches):
        raise DataError(f"{path}: batch {batch_id} is already registered")


def write_batches(batches: list[dict], path: str | Path = BATCHES_FILE) -> None:
    """Write the registry atomically, with its explanatory header."""
    with atomic_path(path) as tmp:
        body = yaml.safe_dump({"batches": batches}, sort_keys=False, default_flow_style=False)
        tmp.write_text(HEADER + body)
