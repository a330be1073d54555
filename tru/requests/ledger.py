"""The deletion-request ledger: append-only Parquet, one immutable file per batch and stage.

Layout::

    <ledger_dir>/<batch_id>/requests.parquet        written once by ingest: one row per input row
    <ledger_dir>/<batch_id>/status-<stage>.parquet  written once by a later stage: status events
                                                    (accepted -> erased / needs_review)
    <ledger_dir>/<batch_id>/gate/status-audit.parquet   the same, from the audit gate (and
    <ledger_dir>/<batch_id>/gate/status-review.parquet  from a review after a failed gate); one
                                                    folder, so the audit stage can own it in DVC

Why Parquet files per batch rather than one SQLite database:

- DVC versions files. An immutable file per batch and stage is one DVC output of one
  stage, so `dvc repro` of batch N reproduces exactly its own files and an auditor can
  check out any night; a single mutable SQLite file would be an output of every stage at
  once (DVC cannot express that) and its bytes change with page layout, not only content.
- Append-only by construction: nothing is ever updated in place. A status change is a new
  event file; the current status is derived (`read_ledger`: the last event wins).
- Crash safety: each file is written to a temporary name and renamed (tru.io.atomic_path),
  so a crash leaves either no file or a complete one, and can never corrupt earlier batches.
- Deterministic bytes: the same inputs give the same file (recorded_at is the batch's time,
  not the wall clock), so hashes in the evidence manifest are reproducible.

Raw ids live here and nowhere else; reports use `public_view`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tru.errors import DataError
from tru.io import atomic_path
from tru.requests.schema import (
    ACCEPTED,
    KINDS,
    LATER_STATUSES,
    LEDGER_COLUMNS,
    LEDGER_SCHEMA,
    NEEDS_REVIEW,
    PRIVATE_COLUMNS,
    STAGE_ORDER,
    STATUS_SCHEMA,
)

REQUESTS_FILE = "requests.parquet"
GATE_DIR = "gate"  # the audit gate's events (audit, review): one DVC output of the audit stage
GATE_STAGES = ("audit", "review")
BATCH_ID_REGEX = re.compile(r"^b(\d{8}T\d{6})Z$")
STAGE_REGEX = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
META_KEY = b"tru.batch"  # Parquet key-value metadata: batch id, inputs (name, sha256, rows), dataset
COMPRESSION = "zstd"


# ---------------------------------------------------------------- time and batch ids


def utc(dt: datetime) -> datetime:
    """`dt` in UTC; a naive datetime is taken to be UTC already."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def iso_utc(dt: datetime) -> str:
    """`2026-11-28T23:00:00Z` (microseconds only when non-zero)."""
    dt = utc(dt)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}"
    return text + "Z"


def new_batch_id(now: datetime) -> str:
    """The batch id for a run at `now` (UTC, whole seconds): `b20261128T230000Z`."""
    return "b" + utc(now).strftime("%Y%m%dT%H%M%S") + "Z"


def parse_batch_time(text: str) -> datetime:
    """A batch time given by a person (`--batch-time`, the flow's `batch_time`): ISO 8601,
    UTC unless it carries an offset (`2026-12-01T02:00:00Z`, `2026-12-01T03:00:00+01:00`)."""
    try:
        return utc(datetime.fromisoformat(str(text).strip()))
    except ValueError:
        raise DataError(f"batch time {text!r} is not an ISO-8601 time (e.g. 2026-12-01T02:00:00Z)") from None


def check_batch_id(batch_id: str) -> str:
    """`batch_id` unchanged when it has the form bYYYYMMDDTHHMMSSZ; DataError otherwise."""
    if not isinstance(batch_id, str) or not BATCH_ID_REGEX.match(batch_id):
        raise DataError(f"batch id {batch_id!r} is not of the form bYYYYMMDDTHHMMSSZ (see new_batch_id)")
    return batch_id


def batch_time(batch_id: str) -> datetime:
    """The UTC time a batch id encodes (what `recorded_at` holds)."""
    match = BATCH_ID_REGEX.match(check_batch_id(batch_id))
    assert match is not None  # check_batch_id matched it
    stamp = match.group(1)
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        raise DataError(f"batch id {batch_id!r} does not encode a valid time") from None


def batch_ids(ledger_dir: str | Path) -> list[str]:
    """Batches with a requests file, oldest first (ids sort by time)."""
    ledger_dir = Path(ledger_dir)
    if not ledger_dir.is_dir():
        return []
    return sorted(
        p.name for p in ledger_dir.iterdir() if BATCH_ID_REGEX.match(p.name) and (p / REQUESTS_FILE).is_file()
    )


def requests_path(ledger_dir: str | Path, batch_id: str) -> Path:
    """`<ledger_dir>/<batch_id>/requests.parquet` (the batch id is checked, not the file)."""
    return Path(ledger_dir) / check_batch_id(batch_id) / REQUESTS_FILE


# ---------------------------------------------------------------- writing


class LedgerWriter:
    """Streams one batch's requests file: chunks are appended as row groups to a temporary
    file that replaces `requests.parquet` only when `close()` succeeds (bounded memory for
    large batches; nothing visible on failure). Use as a context manager."""

    def __init__(self, ledger_dir: str | Path, batch_id: str):
        self.path = requests_path(ledger_dir, batch_id)
        if self.path.exists():
            raise DataError(f"{self.path}: batch {batch_id} is already in the ledger (ledger files are immutable)")
        self.batch_id = batch_id
        self.rows = 0
        self._done = False
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._writer = pq.ParquetWriter(self._tmp, LEDGER_SCHEMA, compression=COMPRESSION)

    def write(self, table: pa.Table) -> None:
        """Append a chunk of ledger rows (a table of LEDGER_SCHEMA; ValueError otherwise)."""
        if table.schema != LEDGER_SCHEMA:
            raise ValueError(f"ledger chunk has schema {table.schema}, expected {LEDGER_SCHEMA}")
        if table.num_rows:
            self._writer.write_table(table)
            self.rows += table.num_rows

    def close(
        self,
        inputs: list[dict],
        dataset: dict | None = None,
        pseudonym_key: str | None = None,
        signing_key: str | None = None,
    ) -> Path:
        """Finish the file and move it into place; `inputs`, `dataset` (`dataset_identity` of
        the split the ids were resolved against, when known), `pseudonym_key` (the key's
        fingerprint, tru.requests.pseudonym.key_fingerprint) and `signing_key` (the fingerprint
        of the key that will sign the batch's evidence, tru.evidence.signing) go into its metadata."""
        meta = {"batch_id": self.batch_id, "inputs": inputs, "rows": self.rows}
        if dataset:
            meta["dataset"] = dataset
        if pseudonym_key:
            meta["pseudonym_key"] = pseudonym_key
        if signing_key:
            meta["signing_key"] = signing_key
        self._writer.add_key_value_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})
        self._writer.close()
        written = pq.read_metadata(self._tmp).num_rows
        if written != self.rows:  # rows written must equal rows handed in
            self.abort()
            raise RuntimeError(f"ledger writer lost rows: {self.rows} handed in, {written} in the file")
        self._done = True
        self._atomic.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file; the ledger stays as it was."""
        if self._done:
            return
        self._done = True
        try:
            self._writer.close()
        except Exception:  # noqa: BLE001 - the file is discarded anyway
            pass
        self._atomic.__exit__(RuntimeError, RuntimeError("ledger write aborted"), None)
        try:
            self.path.parent.rmdir()  # the batch folder, if this writer left it empty
        except OSError:
            pass

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._done:
            self.abort()


# the columns a closed retention window drops: raw ids, the dataset indices they resolved to
# (in a data generation that no longer exists) and the requester's free text
DROPPED_AT_PURGE = {"user_id": None, "item_id": None, "user_index": -1, "item_index": -1, "request_reason": None}


def drop_private(ledger_dir: str | Path, batch_id: str, at: datetime) -> bool:
    """Rewrite batch `batch_id`'s requests file without raw ids, their indices and the free-text
    reasons (DROPPED_AT_PURGE), once its retention window has closed: request ids, kinds,
    pseudonyms and statuses stay, so the ledger still says what was asked, when and what became
    of it. The metadata records when (`private_dropped_at`). Atomic and idempotent: returns
    False when the file had been rewritten already."""
    path = requests_path(ledger_dir, batch_id)
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    if meta.get("private_dropped_at"):
        return False
    cols = {}
    for name in table.schema.names:
        if name in DROPPED_AT_PURGE:
            value = DROPPED_AT_PURGE[name]
            cols[name] = pa.array([value] * table.num_rows, type=table.schema.field(name).type)
        else:
            cols[name] = table.column(name)
    meta["private_dropped_at"] = iso_utc(at)
    out = pa.table(cols, schema=LEDGER_SCHEMA).replace_schema_metadata(
        {META_KEY: json.dumps(meta, sort_keys=True).encode()}
    )
    with atomic_path(path) as tmp:
        pq.write_table(out, tmp, compression=COMPRESSION)
    return True


def batch_metadata(ledger_dir: str | Path, batch_id: str) -> dict:
    """What ingest recorded about a batch: its inputs (name, sha256, rows), row count and, when
    recorded, the dataset its ids were resolved against (`dataset_identity`)."""
    path = requests_path(ledger_dir, batch_id)
    kv = pq.read_metadata(path).metadata or {}
    raw = kv.get(META_KEY)
    return json.loads(raw) if raw else {"batch_id": batch_id, "inputs": [], "rows": pq.read_metadata(path).num_rows}


def dataset_identity(split_meta: dict) -> dict | None:
    """The dataset a split was made from, as a batch records it: its name, its folder and a
    sha256 over the digests of the files the split read (interactions and feature matrices),
    which a split's metadata (split.json) and every batch's sets after it carry. None for a
    split that recorded no digests.

    A batch's requests name the dataset's ids, resolved to indices at ingest: rebuilding the
    batch on other data would apply those indices to other users and items, and rewrite the
    evidence of what was erased (`check_same_dataset`)."""
    files = split_meta.get("sha256")
    if not isinstance(files, dict) or not files:
        return None
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"name": split_meta.get("name"), "dataset_dir": split_meta.get("dataset_dir"), "sha256": digest}


def check_same_dataset(batch_id: str, recorded: dict | None, now: dict | None, outcome: str) -> None:
    """DataError when batch `batch_id`'s ids were resolved against a dataset (`recorded`) other
    than `now` (both `dataset_identity`; a batch that recorded none is not checked). `outcome`
    says what was refused."""
    if not recorded or not now or recorded.get("sha256") == now.get("sha256"):
        return

    def named(d: dict) -> str:
        return f"{d.get('name')} ({d.get('dataset_dir')}, sha256 {str(d.get('sha256'))[:12]}…)"

    raise DataError(
        f"batch {batch_id} was ingested against dataset {named(recorded)}, but the data is now "
        f"{named(now)}: {outcome}. A batch belongs to the dataset it was erased from, so the data "
        "cannot change while batches are registered: restore the `data:` settings (and those that "
        "build the dataset), or switch datasets in a new workspace (docs: Your own data, "
        '"Switching datasets once batches exist")'
    )


# ---------------------------------------------------------------- reading


def _status_files(batch_dir: Path) -> list[tuple[str, Path]]:
    found = []
    for p in [*batch_dir.glob("status-*.parquet"), *batch_dir.glob(f"{GATE_DIR}/status-*.parquet")]:
        stage = p.name[len("status-") : -len(".parquet")]
        if stage not in STAGE_ORDER:
            raise DataError(f"{p}: unknown stage {stage!r} (known, in order: {', '.join(STAGE_ORDER)})")
        found.append((stage, p))
    return sorted(found, key=lambda sp: STAGE_ORDER.index(sp[0]))


def _read_events(batch_dir: Path) -> pd.DataFrame:
    frames = []
    for _stage, p in _status_files(batch_dir):
        t = pq.read_table(p)
        frames.append(t.to_pandas())
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in STATUS_SCHEMA.names})
    return pd.concat(frames, ignore_index=True)


def _empty_ledger(columns: list[str]) -> pd.DataFrame:
    return (
        LEDGER_SCHEMA.empty_table()
        .to_pandas()
        .assign(status_at=pd.Series(dtype=object), stage=pd.Series(dtype=object))[columns]
    )


def read_ledger(ledger_dir: str | Path, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """Every ledger row of every batch with its current status (the last event wins;
    events apply in batch order, then in STAGE_ORDER).

    Columns: LEDGER_COLUMNS plus `status_at` (when the current status was set) and `stage`
    (`ingest` or the stage that set it). `columns` selects a subset (cheaper for big ledgers).
    """
    ledger_dir = Path(ledger_dir)
    all_cols = list(LEDGER_COLUMNS) + ["status_at", "stage"]
    want = all_cols if columns is None else list(columns)
    unknown = [c for c in want if c not in all_cols]
    if unknown:
        raise ValueError(f"unknown ledger column(s) {unknown}")
    base = [c for c in LEDGER_COLUMNS if c in set(want) | {"batch_id", "request_id", "status", "recorded_at", "reason"}]
    frames = []
    for b in batch_ids(ledger_dir):
        df = pq.read_table(ledger_dir / b / REQUESTS_FILE, columns=base).to_pandas()
        df["status_at"] = df["recorded_at"]
        df["stage"] = "ingest"
        events = _read_events(ledger_dir / b)
        if len(events):
            df = _apply_events(df, events)
        frames.append(df)
    if not frames:
        return _empty_ledger(want)
    out = pd.concat(frames, ignore_index=True)
    return out[want]


def _apply_events(df: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Apply status events (already in order) to the accepted rows they name."""
    last = events.drop_duplicates("request_id", keep="last").set_index("request_id")
    target = (df["status"] == ACCEPTED) & df["request_id"].isin(last.index)
    ids = df.loc[target, "request_id"]
    for col, src in (("status", "status"), ("reason", "reason"), ("status_at", "at"), ("stage", "stage")):
        df.loc[target, col] = last.loc[ids, src].to_numpy()
    return df


# ---------------------------------------------------------------- later transitions


def append_status(
    ledger_dir: str | Path,
    batch_id: str,
    stage: str,
    request_ids: Iterable[str],
    status: str,
    at: datetime,
    reason: str | None = None,
) -> Path:
    """Record that `stage` moved the batch's accepted requests `request_ids` to `status`
    (`erased` or `needs_review`) at time `at`; writes `status-<stage>.parquet` once.

    A stage writes its file once per batch (immutable); writing the same events again is a
    no-op (a retried task), different events are an error. Every id must name an accepted
    request of this batch whose current status is `accepted` or `needs_review`.
    """
    ledger_dir = Path(ledger_dir)
    batch_dir = ledger_dir / check_batch_id(batch_id)
    if stage not in STAGE_ORDER:
        raise DataError(f"unknown stage {stage!r}: status events come from one of {', '.join(STAGE_ORDER)}")
    if status not in LATER_STATUSES:
        raise DataError(f"status {status!r} cannot be appended; later stages set one of {', '.join(LATER_STATUSES)}")
    if not (batch_dir / REQUESTS_FILE).is_file():
        raise DataError(f"{batch_dir / REQUESTS_FILE}: batch {batch_id} is not in the ledger")
    ids = list(request_ids)
    if len(set(ids)) != len(ids):
        raise DataError(f"append_status({stage}): the same request_id is listed more than once")
    path = (batch_dir / GATE_DIR if stage in GATE_STAGES else batch_dir) / f"status-{stage}.parquet"
    later = [s for s, _ in _status_files(batch_dir) if STAGE_ORDER.index(s) > STAGE_ORDER.index(stage)]
    if later:
        raise DataError(f"{path}: stage {stage} cannot record after the later stage(s) {', '.join(later)}")

    table = pa.table(
        {
            "batch_id": [batch_id] * len(ids),
            "request_id": ids,
            "stage": [stage] * len(ids),
            "status": [status] * len(ids),
            "reason": [reason] * len(ids),
            "at": [iso_utc(at)] * len(ids),
        },
        schema=STATUS_SCHEMA,
    )
    if path.exists():
        if pq.read_table(path).equals(table):
            return path
        raise DataError(
            f"{path}: stage {stage} already recorded different status events for batch {batch_id} "
            "(ledger files are immutable)"
        )

    current = pq.read_table(
        batch_dir / REQUESTS_FILE, columns=["request_id", "status", "reason", "recorded_at"]
    ).to_pandas()
    current = current[current["status"] == ACCEPTED]
    current = current.assign(batch_id=batch_id, status_at=current["recorded_at"], stage="ingest")
    events = _read_events(batch_dir)
    if len(events):
        current = _apply_events(current, events)
    state = dict(zip(current["request_id"], current["status"]))
    missing = [r for r in ids if r not in state]
    if missing:
        raise DataError(
            f"append_status({stage}): {len(missing)} request id(s) are not accepted requests of batch {batch_id}"
        )
    settled = [r for r in ids if state[r] not in (ACCEPTED, NEEDS_REVIEW)]
    if settled:
        raise DataError(
            f"append_status({stage}): {len(settled)} request(s) of batch {batch_id} are already {state[settled[0]]}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=COMPRESSION)
    return path


# ---------------------------------------------------------------- reports


def public_view(ledger: pd.DataFrame) -> pd.DataFrame:
    """The ledger without anything that identifies a person: raw ids, dataset indices, the
    requester's free text, request ids and file names are dropped; `duplicate_of` becomes the
    boolean `duplicate_target`; an invalid `kind` (free input) becomes `invalid` and is not
    quoted in reasons. Reasons never hold ids.
    Reports, logs and the evidence PDF use this view only."""
    out = ledger.drop(columns=[c for c in PRIVATE_COLUMNS if c in ledger.columns])
    if "duplicate_of" in ledger.columns:
        out["duplicate_target"] = ledger["duplicate_of"].notna().to_numpy()
    if "kind" in out.columns:
        out["kind"] = out["kind"].where(out["kind"].isin(KINDS), "invalid")
    if "reason" in out.columns:  # the ledger's reasons may quote a bad kind; reports do not
        out["reason"] = out["reason"].str.replace(r"kind '[^']*'", "kind", regex=True)
    return out
