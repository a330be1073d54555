"""Deletion requests: schema, validation and ingest, the append-only ledger, pseudonyms.

Importing this package is cheap (Great Expectations is imported only when a batch is
validated).
"""

from tru.requests.ingest import Catalog, ingest_batch, ingest_files, pending_files, take_inbox
from tru.requests.ledger import (
    append_status,
    batch_ids,
    batch_metadata,
    batch_time,
    iso_utc,
    new_batch_id,
    public_view,
    read_ledger,
    requests_path,
)
from tru.requests.pseudonym import load_key, pseudonym, subject
from tru.requests.schema import (
    ACCEPTED,
    ALREADY_ERASED,
    ERASED,
    KINDS,
    LEDGER_COLUMNS,
    NEEDS_REVIEW,
    REJECTED,
    STAGE_ORDER,
    STATUSES,
)

__all__ = [
    "ACCEPTED",
    "ALREADY_ERASED",
    "Catalog",
    "ERASED",
    "KINDS",
    "LEDGER_COLUMNS",
    "NEEDS_REVIEW",
    "REJECTED",
    "STAGE_ORDER",
    "STATUSES",
    "append_status",
    "batch_ids",
    "batch_metadata",
    "batch_time",
    "ingest_batch",
    "ingest_files",
    "iso_utc",
    "load_key",
    "new_batch_id",
    "pending_files",
    "pseudonym",
    "public_view",
    "read_ledger",
    "requests_path",
    "subject",
    "take_inbox",
]
