"""What a deletion request is, and what the ledger records about it.

A request file (JSON Lines, CSV or Parquet) holds one request per row:

- `request_id`: the requester's id for the request, unique, 1-128 characters of
  `[A-Za-z0-9._:-]`; it must not look like a path (no `..`, no leading `.`; `/` is not
  allowed at all).
- `kind`: `user` (erase a user: every interaction, their embedding row), `item` (erase an
  item: every interaction with it, it leaves the candidate set) or `interaction` (one
  (user, item) pair).
- `user_id`: the dataset's raw user id; required for `user` and `interaction`, must be
  empty for `item`.
- `item_id`: the dataset's raw item id; required for `item` and `interaction`, must be
  empty for `user`.
- `received_at`: ISO-8601 timestamp; without a UTC offset it is taken as UTC. Stored as a
  UTC string (`2026-11-28T23:00:00Z`).
- `reason`: optional free text from the requester (any script; the ledger keeps its first 2000
  characters and notes the truncation: never a reason to refuse a request).

Every value must be a string (JSON numbers, lists, objects or booleans are rejected, not
converted: `42` and `42.0` would otherwise be ambiguous ids). An empty string counts as
missing. Other columns/keys are ignored.
"""

from __future__ import annotations

import pyarrow as pa

KINDS = ("user", "item", "interaction")
FIELDS = ("request_id", "kind", "user_id", "item_id", "received_at", "reason")
NEEDS_USER = ("user", "interaction")
NEEDS_ITEM = ("item", "interaction")

MAX_ID_LEN = 128
MAX_REASON_LEN = 2000
MAX_LINE_BYTES = 1 << 20  # a JSONL line or CSV field longer than this is rejected, not read whole

# Formats (Python `re`, as Great Expectations applies them to pandas). `\Z`, not `$`: `$`
# would accept a trailing newline. Lengths are part of the patterns so one expectation
# checks a whole field; the failing rows' messages then say which rule was broken.
REQUEST_ID_CHARS = r"[A-Za-z0-9._:-]"
PATHLIKE_REGEX = r"^\.|\.\."  # leading dot or a `..` anywhere
REQUEST_ID_REGEX = rf"^(?!\.)(?!.*\.\.){REQUEST_ID_CHARS}{{1,{MAX_ID_LEN}}}\Z"
# raw dataset ids: no control characters, no leading/trailing whitespace
ID_REGEX = rf"^(?=[^\n]{{1,{MAX_ID_LEN}}}\Z)[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?\Z"

# statuses
ACCEPTED = "accepted"
REJECTED = "rejected"
ALREADY_ERASED = "already_erased"
ERASED = "erased"
NEEDS_REVIEW = "needs_review"
INGEST_STATUSES = (ACCEPTED, REJECTED, ALREADY_ERASED)
LATER_STATUSES = (ERASED, NEEDS_REVIEW)
STATUSES = INGEST_STATUSES + LATER_STATUSES

# later stages that may append status events to a batch, in the order they run.
# read_ledger applies a batch's status files in this order (the last event wins).
STAGE_ORDER = ("unlearn", "audit", "review")

# one row per input row of the batch; raw ids stay here and nowhere else
LEDGER_SCHEMA = pa.schema(
    [
        ("batch_id", pa.string()),
        ("source", pa.string()),  # input file name
        ("line", pa.int64()),  # 1-based line (JSONL, CSV: physical line where the record ends) or row (Parquet)
        ("request_id", pa.string()),
        ("kind", pa.string()),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("user_index", pa.int64()),  # resolved dataset index, -1 if not resolved
        ("item_index", pa.int64()),
        ("subject", pa.string()),  # keyed HMAC pseudonym of the target, null when the row has no valid target
        ("status", pa.string()),
        ("reason", pa.string()),  # why rejected / already erased (never echoes raw ids)
        ("duplicate_of", pa.string()),  # request_id of an earlier request for the same target
        ("received_at", pa.string()),
        ("recorded_at", pa.string()),  # the batch's time, not the wall clock
        ("request_reason", pa.string()),  # the requester's free text
    ]
)
LEDGER_COLUMNS = tuple(LEDGER_SCHEMA.names)

STATUS_SCHEMA = pa.schema(
    [
        ("batch_id", pa.string()),
        ("request_id", pa.string()),
        ("stage", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("at", pa.string()),
    ]
)

# columns that identify a person or can be linked back to one: never leave the ledger
PRIVATE_COLUMNS = (
    "request_id",
    "user_id",
    "item_id",
    "user_index",
    "item_index",
    "duplicate_of",
    "request_reason",
    "source",
    "line",
)
