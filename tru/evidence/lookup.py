"""`tru evidence get REQUEST_ID`: which batch holds a request, its status, and the evidence PDF;
and which batches exist at all (`registered_batches`, `check_known_batch`), so that a mistyped
batch id is named as unknown instead of as a batch with missing files."""

from __future__ import annotations

from pathlib import Path

from tru import batches, paths
from tru.errors import DataError
from tru.evidence import layout
from tru.requests.ledger import BATCH_ID_REGEX, batch_ids, read_ledger
from tru.requests.schema import REJECTED

# how many ids an "unknown batch" message lists (the newest ones) before it only counts them
SHOWN_IDS = 8


def registered_batches(root: str | Path = Path(".")) -> list[str]:
    """The ids in root's batches.yaml, oldest first (none when it is absent)."""
    return [str(b["id"]) for b in batches.read_batches(Path(root) / paths.BATCHES_FILE)]


def known_batches(root: str | Path = Path(".")) -> list[str]:
    """Every batch the checkout knows, sorted (ids sort by time): those registered in
    batches.yaml and those with a report folder (reports/<id>/)."""
    root = Path(root)
    reports = root / paths.REPORTS
    found = set(registered_batches(root))
    if reports.is_dir():
        found.update(p.name for p in reports.iterdir() if p.is_dir() and BATCH_ID_REGEX.match(p.name))
    return sorted(found)


def check_known_batch(batch_id: str, root: str | Path = Path(".")) -> None:
    """DataError "unknown batch X (known: ...)" unless `batch_id` is one of `known_batches`."""
    known = known_batches(root)
    if batch_id in known:
        return
    if not known:
        listing = f"none; `tru ingest` registers batches in {paths.BATCHES_FILE}"
    elif len(known) <= SHOWN_IDS:
        listing = f"{', '.join(known)}; see `tru status` or {paths.BATCHES_FILE}"
    else:
        listing = f"{len(known)} batches, the newest {', '.join(known[-SHOWN_IDS:])}; see `tru status`"
    raise DataError(f"unknown batch {batch_id} (known: {listing})")


COLUMNS = ["batch_id", "request_id", "kind", "subject", "status", "reason", "status_at", "stage"]


def get_request(request_id: str, root: str | Path = Path(".")) -> dict:
    """The batch that recorded `request_id` (the requester's id, as the ledger stores it), its
    current status and the batch's evidence PDF. The same id sent again later is rejected as a
    duplicate in the later batch; the batch that accepted it is the one returned (else the first)."""
    root = Path(root)
    ledger_dir = root / paths.LEDGER
    ledger = read_ledger(ledger_dir, columns=COLUMNS)
    rows = ledger[ledger["request_id"] == request_id]
    if rows.empty:
        n = len(batch_ids(ledger_dir))
        raise DataError(
            f"request {request_id!r} is not in the ledger ({ledger_dir}: {n} batch(es) searched); "
            "check the id as the requester sent it (the `request_id` of the request file)"
        )
    kept = rows[rows["status"] != REJECTED]
    row = (kept if len(kept) else rows).iloc[0]
    batch = str(row["batch_id"])
    pdf = layout.pdf_path(batch)
    return {
        "request_id": request_id,
        "batch": batch,
        "kind": row["kind"] if isinstance(row["kind"], str) else None,
        "subject": row["subject"] if isinstance(row["subject"], str) else None,
        "status": str(row["status"]),
        "reason": row["reason"] if isinstance(row["reason"], str) else None,
        "status_at": row["status_at"] if isinstance(row["status_at"], str) else None,
        "stage": row["stage"],
        "pdf": pdf.as_posix(),
        "pdf_exists": (root / pdf).is_file(),
        "other_batches": sorted(set(rows["batch_id"]) - {batch}),
    }
