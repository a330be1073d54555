"""`tru evidence get REQUEST_ID`: what the ledger records about one request (its batch and its
row there, status and reason, dates, the batch that erased it); and which batches exist at all
(`registered_batches`, `check_known_batch`), so that a mistyped batch id is named as unknown
instead of as a batch with missing files."""

from __future__ import annotations

from pathlib import Path

from tru import batches, paths
from tru.errors import DataError
from tru.evidence import layout
from tru.requests.ledger import BATCH_ID_REGEX, batch_ids, public_view, read_ledger
from tru.requests.schema import ALREADY_ERASED, ERASED, NEEDS_ITEM, NEEDS_USER, REJECTED

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


# what `get_request` reads of every ledger row: raw ids are not among them
COLUMNS = [
    "batch_id",
    "request_id",
    "kind",
    "subject",
    "status",
    "reason",
    "received_at",
    "status_at",
    "stage",
    "duplicate_of",
]
# read only for an already-erased request, to find the earlier batch that erased its target;
# the raw ids never leave `_erased_before`
TARGET_COLUMNS = ["batch_id", "request_id", "kind", "user_id", "item_id", "status", "status_at"]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _erased_before(ledger_dir: Path, batch_id: str, request_id: str) -> tuple[str, str | None] | None:
    """(batch, time) of the erasure that made request `request_id` of batch `batch_id` already
    erased, or None when the ledger holds none. The rule is the one ingest applied when it
    marked the request (tru.requests.ingest: `_State.erased`): an erased request for its user,
    else for its item, else for the same interaction, in the first batch that erased it. The
    ledger's status events say when that batch erased it."""
    ledger = read_ledger(ledger_dir, columns=TARGET_COLUMNS)
    mine = ledger[
        (ledger["batch_id"] == batch_id) & (ledger["request_id"] == request_id) & (ledger["status"] == ALREADY_ERASED)
    ]
    if mine.empty:
        return None
    kind, user_id, item_id = (mine.iloc[0][c] for c in ("kind", "user_id", "item_id"))
    done = ledger[(ledger["status"] == ERASED) & (ledger["batch_id"] < batch_id)]  # ids sort by time
    same_user, same_item = done["user_id"] == user_id, done["item_id"] == item_id
    rules = []
    if kind in NEEDS_USER:
        rules.append((done["kind"] == "user") & same_user)
    if kind in NEEDS_ITEM:
        rules.append((done["kind"] == "item") & same_item)
    if kind == "interaction":
        rules.append((done["kind"] == "interaction") & same_user & same_item)
    for match in rules:
        if match.any():
            first = done[match].iloc[0]
            return str(first["batch_id"]), _text(first["status_at"])
    return None


def get_request(request_id: str, root: str | Path = Path(".")) -> dict:
    """What the ledger records about request `request_id` (the requester's id, as the ledger
    stores it): the batch that recorded it and its row there, its kind, pseudonym (`subject`),
    current status with its reason, when it was received, and the batch that erased it and
    when. The same id sent again later is rejected as a duplicate in the later batch; the row
    that was not rejected is the one returned (else the first).

    What is returned is what the batch's evidence PDF may show, plus the request id the caller
    gave: kind and reason pass through `public_view`, raw user and item ids are never read
    (except to find the erasure of an already-erased target, and then not returned).

    - `row`, `batch_rows`: the request's position among its batch's ledger rows, as the PDF's
      request list numbers them (it lists the first MAX_REQUEST_ROWS);
    - `erased_by`, `erased_at`: the batch that erased it and when; for an already-erased
      request the earlier batch that erased its target (None when not erased)."""
    root = Path(root)
    ledger_dir = root / paths.LEDGER
    ledger = read_ledger(ledger_dir, columns=COLUMNS)
    ledger["row"] = ledger.groupby("batch_id", sort=False).cumcount() + 1
    rows = ledger[ledger["request_id"] == request_id]
    if rows.empty:
        n = len(batch_ids(ledger_dir))
        raise DataError(
            f"request {request_id!r} is not in the ledger ({ledger_dir}: {n} batch(es) searched); "
            "check the id as the requester sent it (the `request_id` of the request file)"
        )
    kept = rows[rows["status"] != REJECTED]
    row = public_view((kept if len(kept) else rows).iloc[[0]]).iloc[0]
    batch = str(row["batch_id"])
    status = str(row["status"])
    erased_by, erased_at = (batch, _text(row["status_at"])) if status == ERASED else (None, None)
    if status == ALREADY_ERASED:
        erased_by, erased_at = _erased_before(ledger_dir, batch, request_id) or (None, None)
    pdf = layout.pdf_path(batch)
    return {
        "request_id": request_id,
        "batch": batch,
        "row": int(row["row"]),
        "batch_rows": int((ledger["batch_id"] == batch).sum()),
        "kind": _text(row["kind"]),
        "subject": _text(row["subject"]),
        "status": status,
        "reason": _text(row["reason"]),
        "duplicate_target": bool(row["duplicate_target"]),
        "received_at": _text(row["received_at"]),
        "status_at": _text(row["status_at"]),
        "stage": row["stage"],
        "erased_by": erased_by,
        "erased_at": erased_at,
        "pdf": pdf.as_posix(),
        "pdf_exists": (root / pdf).is_file(),
        "other_batches": sorted(set(rows["batch_id"]) - {batch}),
    }
