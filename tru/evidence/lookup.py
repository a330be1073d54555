"""`tru evidence get REQUEST_ID`: which batch holds a request, its status, and the evidence PDF."""

from __future__ import annotations

from pathlib import Path

from tru import paths
from tru.errors import DataError
from tru.evidence import layout
from tru.requests.ledger import batch_ids, read_ledger
from tru.requests.schema import REJECTED

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
