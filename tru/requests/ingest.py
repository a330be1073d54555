"""Ingest deletion requests: validate every row of a batch's files, record one status per row.

Flow of `ingest_batch` (crash-safe: nothing changes unless everything was read):

1. list the inbox (sorted; dotfiles and partial uploads `*.part`/`*.tmp`/... are skipped);
2. stream every file in chunks (`tru.requests.readers`: JSON Lines line by line, CSV record
   by record, Parquet batch by batch) and validate each chunk: schema and formats with
   Great Expectations (`tru.requests.checks`), then the targets against the dataset
   (`Catalog`) and the ledger's earlier batches;
3. write the batch's ledger file `<ledger_dir>/<batch_id>/requests.parquet` atomically, one
   row per input row (the count is asserted);
4. only then move the input files to `<batches_dir>/<batch_id>/input/` (`tru.requests.inbox`;
   never deleted).

A row-level problem rejects that row with a reason a person understands. Only a file that
cannot be read at all (unknown extension, corrupt Parquet, I/O error) raises DataError:
then no ledger file is written and the inbox is untouched, so the next run retries.

Statuses written here: `accepted`, `rejected`, `already_erased`. Rules, in order, for a
row whose fields are all well-formed:
- its request_id was recorded before (any batch, or earlier in this batch) by a request
  that was not rejected: idempotent, `rejected` "duplicate request_id (first recorded in
  batch X)", or `already_erased` when its target has been erased since; the same id for a
  different target is `rejected` as a reused id;
- its target was erased by an earlier batch (for an interaction also: its user or item
  was): `already_erased`; matched on raw ids, so it holds even against a retained-data
  catalog;
- unknown user, unknown item, or an interaction not in the dataset: `rejected`;
- otherwise `accepted`; when an earlier request (this batch or a pending one before) has
  the same target, `duplicate_of` names it (the forget set erases the target once).
A request_id first seen on a rejected row may be sent again (corrected) and is then judged
on its own.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tru.errors import DataError
from tru.io import sha256_file
from tru.requests.catalog import Catalog
from tru.requests.checks import SchemaValidator, clean_values, kind_rules
from tru.requests.inbox import finish_interrupted_moves, pending_files, take_inbox
from tru.requests.ledger import (
    LedgerWriter,
    batch_ids,
    batch_time,
    check_batch_id,
    iso_utc,
    new_batch_id,
    read_ledger,
    requests_path,
)
from tru.requests.pseudonym import subject as make_subject
from tru.requests.readers import read_chunks, reader_for
from tru.requests.schema import (
    ACCEPTED,
    ALREADY_ERASED,
    ERASED,
    FIELDS,
    INGEST_STATUSES,
    KINDS,
    LEDGER_SCHEMA,
    MAX_REASON_LEN,
    NEEDS_ITEM,
    NEEDS_USER,
    REJECTED,
)

log = logging.getLogger(__name__)

CHUNK_ROWS = 50_000
_LEDGER_TEXT_LIMIT = 256  # raw values longer than this (rejected anyway) are clipped in the ledger


# ====================================================================== prior state


@dataclass
class _State:
    """What earlier batches (and earlier rows of this batch) decided. Targets are keyed by
    their subject (recomputed from the ledger's raw ids with the current key), so the
    per-request state is one short string per request."""

    batch_id: str
    ids: dict[str, str] = field(default_factory=dict)  # request_id -> subject, for non-rejected rows
    first_batch: dict[str, str] = field(default_factory=dict)  # request_id -> batch, for earlier batches
    pending: dict[str, str] = field(default_factory=dict)  # subject -> first request_id not yet erased
    erased_users: dict[str, str] = field(default_factory=dict)  # raw id -> batch that erased it
    erased_items: dict[str, str] = field(default_factory=dict)
    erased_pairs: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def load(cls, ledger_dir: Path, batch_id: str, key: bytes) -> _State:
        state = cls(batch_id)
        cols = ["batch_id", "request_id", "kind", "user_id", "item_id", "status"]
        df = read_ledger(ledger_dir, columns=cols)
        df = df[df["status"] != REJECTED]
        pending = []
        for b, rid, kind, uid, iid, status in df.itertuples(index=False, name=None):
            uid = uid if isinstance(uid, str) else ""
            iid = iid if isinstance(iid, str) else ""
            subj = make_subject(key, kind, uid, iid)
            if rid not in state.ids:
                state.ids[rid] = subj
                state.first_batch[rid] = b
            if status == ERASED:
                if kind == "user":
                    state.erased_users.setdefault(uid, b)
                elif kind == "item":
                    state.erased_items.setdefault(iid, b)
                else:
                    state.erased_pairs.setdefault((uid, iid), b)
            elif status != ALREADY_ERASED:
                pending.append((subj, rid, kind, uid, iid))
        for subj, rid, kind, uid, iid in pending:  # still pending unless erased by another request
            if state.erased(kind, uid, iid) is None:
                state.pending.setdefault(subj, rid)
        return state

    def erased(self, kind: str, uid: str | None, iid: str | None) -> str | None:
        """Why the target is already erased, or None."""
        if kind in NEEDS_USER and uid in self.erased_users:
            return f"user already erased in batch {self.erased_users[uid]}"
        if kind in NEEDS_ITEM and iid in self.erased_items:
            return f"item already erased in batch {self.erased_items[iid]}"
        if kind == "interaction" and uid is not None and iid is not None and (uid, iid) in self.erased_pairs:
            return f"interaction already erased in batch {self.erased_pairs[(uid, iid)]}"
        return None


# ====================================================================== ledger rows


def _iso_utc_strings(values: np.ndarray) -> np.ndarray:
    """UTC datetime64 values as `2026-11-28T23:00:00Z` (microseconds only when non-zero)."""
    values = values.astype("datetime64[us]")
    whole = values == values.astype("datetime64[s]")
    out = np.empty(len(values), dtype=object)
    out[whole] = [t + "Z" for t in np.datetime_as_string(values[whole], unit="s").tolist()]
    out[~whole] = [t + "Z" for t in np.datetime_as_string(values[~whole], unit="us").tolist()]
    return out


def _ledger_text(values: np.ndarray, limit: int) -> pa.Array:
    """Cleaned strings as the ledger stores them: values longer than `limit` (rejected
    anyway) are clipped so one oversize field cannot bloat the ledger."""
    arr = pa.array(values, pa.string())
    too_long = pc.greater(pc.utf8_length(arr), limit)
    if pc.any(too_long).as_py():
        arr = pc.if_else(too_long, pc.binary_join_element_wise(pc.utf8_slice_codeunits(arr, 0, limit), "…", ""), arr)
    return arr


# ====================================================================== chunk processing


class _Processor:
    """Judges the chunks of one batch, in order: each row's status, reason and ledger row."""

    def __init__(self, batch_id: str, catalog: Catalog, key: bytes, state: _State):
        self.batch_id = batch_id
        self.recorded_at = iso_utc(batch_time(batch_id))
        self.catalog = catalog
        self.key = key
        self.state = state
        self.schema = SchemaValidator()
        self.counts: Counter[tuple[str, str]] = Counter()  # (kind, status) -> rows
        self.timing: defaultdict[str, float] = defaultdict(float)  # seconds per phase, logged at DEBUG

    def process(self, df: pd.DataFrame) -> pa.Table:
        """One chunk from `read_chunks` in; its ledger rows (LEDGER_SCHEMA, same order) out.
        Updates the batch state and the per-(kind, status) counts."""
        tick = time.perf_counter()
        n = len(df)
        msgs = {f: np.full(n, None, dtype=object) for f in FIELDS}
        pre = df["pre"].to_numpy(object)
        has_pre = np.fromiter((isinstance(p, str) for p in pre), dtype=bool, count=n)

        clean = {f: clean_values(df[f].to_numpy(object), f, msgs) for f in FIELDS}
        received_at = pd.Series(clean["received_at"], dtype=object)
        ts = pd.to_datetime(received_at, format="ISO8601", utc=True, errors="coerce")
        kind, uid, iid, rids = clean["kind"], clean["user_id"], clean["item_id"], clean["request_id"]

        # schema and formats: Great Expectations, on the rows that parsed (index = row position)
        live = np.flatnonzero(~has_pre)
        frame = pd.DataFrame({f: pd.Series(clean[f][live], index=live, dtype=object) for f in FIELDS})
        frame["received_at_utc"] = ts.iloc[live].set_axis(live)
        self.timing["prepare"] += time.perf_counter() - tick
        tick = time.perf_counter()
        if len(live):
            self.schema.record_problems(frame, clean, df["absent"].to_numpy(object), msgs)
        self.timing["gx"] += time.perf_counter() - tick
        tick = time.perf_counter()
        kind_rules(clean, df["absent"].to_numpy(object), has_pre, msgs)

        # numpy's stubs reject None as an operand; at run time it compares elementwise
        bad_field = {f: np.not_equal(msgs[f], None) for f in FIELDS}  # type: ignore[call-overload]
        fmt_bad = has_pre.copy()
        for f in FIELDS:
            fmt_bad |= bad_field[f]
        target_ok = ~(has_pre | bad_field["kind"] | bad_field["user_id"] | bad_field["item_id"])

        # targets against the dataset
        kind_s = kind.astype(str)
        needs_u = np.isin(kind_s, NEEDS_USER) & target_ok
        needs_i = np.isin(kind_s, NEEDS_ITEM) & target_ok
        uidx = np.full(n, -1, dtype=np.int64)
        iidx = np.full(n, -1, dtype=np.int64)
        uidx[needs_u] = self.catalog.user_index(uid[needs_u])
        iidx[needs_i] = self.catalog.item_index(iid[needs_i])
        unknown_u = needs_u & (uidx < 0)
        unknown_i = needs_i & (iidx < 0)
        no_pair = target_ok & (kind_s == "interaction") & ~unknown_u & ~unknown_i & ~self.catalog.has_pair(uidx, iidx)
        target_msg = np.full(n, None, dtype=object)
        for i in np.flatnonzero(unknown_u | unknown_i | no_pair):
            if no_pair[i]:
                target_msg[i] = "no such interaction (this user has no interaction with this item in the dataset)"
            else:
                parts = ["unknown user_id (not in the dataset)"] if unknown_u[i] else []
                parts += ["unknown item_id (not in the dataset)"] if unknown_i[i] else []
                target_msg[i] = "; ".join(parts)

        status = np.full(n, REJECTED, dtype=object)
        reason = np.full(n, None, dtype=object)
        dup_of = np.full(n, None, dtype=object)
        subjects = np.full(n, None, dtype=object)
        received = np.full(n, None, dtype=object)
        ok_ts = ts.notna().to_numpy()
        if ok_ts.any():
            utc = ts.to_numpy() if ts.dt.tz is None else ts.dt.tz_convert(None).to_numpy()
            received[ok_ts] = _iso_utc_strings(utc[ok_ts])
        key = self.key
        for i in np.flatnonzero(target_ok):
            subjects[i] = make_subject(key, kind[i], uid[i], iid[i])
        for i in np.flatnonzero(fmt_bad):  # rejected for the form: every problem of the row, in field order
            if has_pre[i]:
                reason[i] = pre[i]
            else:
                parts = [msgs[f][i] for f in FIELDS if bad_field[f][i]]
                if target_msg[i] is not None:
                    parts.append(target_msg[i])
                reason[i] = "; ".join(parts)
        self.timing["targets"] += time.perf_counter() - tick
        tick = time.perf_counter()

        st, batch_id = self.state, self.batch_id
        for i in np.flatnonzero(~fmt_bad):  # ledger state, in row order
            rid, subj = rids[i], subjects[i]
            erased = st.erased(kind[i], uid[i], iid[i])
            prev = st.ids.get(rid)
            if prev is not None:
                pb = st.first_batch.get(rid, batch_id)
                if prev != subj:
                    reason[i] = f"request_id already used for a different request (first recorded in batch {pb})"
                elif erased:
                    status[i] = ALREADY_ERASED
                    reason[i] = f"duplicate request_id (first recorded in batch {pb}); {erased}"
                else:
                    reason[i] = f"duplicate request_id (first recorded in batch {pb})"
            elif erased:
                status[i], reason[i] = ALREADY_ERASED, erased
                st.ids[rid] = subj
            elif target_msg[i] is not None:
                reason[i] = target_msg[i]
            else:
                status[i] = ACCEPTED
                st.ids[rid] = subj
                first = st.pending.setdefault(subj, rid)
                if first != rid:
                    dup_of[i] = first
                    reason[i] = "same target as an earlier request (see duplicate_of); erased once"
        self.timing["state"] += time.perf_counter() - tick
        tick = time.perf_counter()

        kind_out = np.where(np.isin(kind_s, KINDS), kind, "invalid")
        self.counts.update(zip(kind_out.tolist(), status.tolist()))
        table = pa.table(
            {
                "batch_id": pa.array(np.full(n, self.batch_id, dtype=object), pa.string()),
                "source": pa.array(df["source"].to_numpy(object), pa.string()),
                "line": pa.array(df["line"].to_numpy(np.int64), pa.int64()),
                "request_id": _ledger_text(rids, _LEDGER_TEXT_LIMIT),
                "kind": _ledger_text(kind, 64),
                "user_id": _ledger_text(uid, _LEDGER_TEXT_LIMIT),
                "item_id": _ledger_text(iid, _LEDGER_TEXT_LIMIT),
                "user_index": pa.array(uidx, pa.int64()),
                "item_index": pa.array(iidx, pa.int64()),
                "subject": pa.array(subjects, pa.string()),
                "status": pa.array(status, pa.string()),
                "reason": pa.array(reason, pa.string()),
                "duplicate_of": pa.array(dup_of, pa.string()),
                "received_at": pa.array(received, pa.string()),
                "recorded_at": pa.array(np.full(n, self.recorded_at, dtype=object), pa.string()),
                "request_reason": _ledger_text(clean["reason"], MAX_REASON_LEN),
            },
            schema=LEDGER_SCHEMA,
        )
        self.timing["table"] += time.perf_counter() - tick
        return table


# ====================================================================== entry points


def _check_paths(paths: Sequence[str | Path]) -> list[Path]:
    files = [Path(p) for p in paths]
    names = [p.name for p in files]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"two input files are both named {dup[0]}; file names must be unique within a batch")
    for p in files:
        if not p.is_file():
            raise DataError(f"{p}: input file not found")
        reader_for(p)  # unsupported type: fail before reading anything
    return files


def _ingest(
    paths: Sequence[str | Path],
    batch_id: str,
    ledger_dir: str | Path,
    catalog: Catalog,
    key: bytes,
    chunk_rows: int = CHUNK_ROWS,
) -> dict:
    """Validate every row of `paths` and write the batch's ledger file; returns a summary.
    Streams: memory is bounded by the chunk size plus the per-request state (ids seen)."""
    check_batch_id(batch_id)
    ledger_dir = Path(ledger_dir)
    paths = _check_paths(paths)
    if requests_path(ledger_dir, batch_id).exists():
        raise DataError(f"{requests_path(ledger_dir, batch_id)}: batch {batch_id} is already in the ledger")
    if any(b >= batch_id for b in batch_ids(ledger_dir)):
        raise DataError(f"{ledger_dir}: a batch at or after {batch_id} is already recorded; batch ids must increase")
    inputs: list[dict[str, Any]] = [{"name": p.name, "sha256": sha256_file(p)} for p in paths]
    state = _State.load(ledger_dir, batch_id, key)
    rows_in: dict[str, int] = {}
    proc = None
    with LedgerWriter(ledger_dir, batch_id) as writer:
        for chunk in read_chunks(paths, chunk_rows, rows_in):
            if proc is None:
                proc = _Processor(batch_id, catalog, key, state)
            table = proc.process(chunk)
            if table.num_rows != len(chunk):
                raise RuntimeError(f"ingest lost rows in a chunk: {len(chunk)} read, {table.num_rows} statuses")
            writer.write(table)
        total = sum(rows_in.values())
        if writer.rows != total:
            raise RuntimeError(f"ingest lost rows: {total} read, {writer.rows} statuses written")
        for inp in inputs:
            inp["rows"] = rows_in.get(inp["name"], 0)
        path = writer.close(inputs)
    counts = proc.counts if proc is not None else Counter()
    if proc is not None:
        seconds = {k: round(v, 2) for k, v in proc.timing.items()}
        log.debug("ingest %s: %d rows; seconds per phase %s", batch_id, total, seconds)
    by_status = {s: sum(v for (k, st), v in counts.items() if st == s) for s in INGEST_STATUSES}
    by_kind: dict[str, dict[str, int]] = {}
    for (k, s), v in sorted(counts.items()):
        by_kind.setdefault(k, {st: 0 for st in INGEST_STATUSES})[s] = v
    return {
        "batch_id": batch_id,
        "files": [{"name": i["name"], "rows": i["rows"], "sha256": i["sha256"]} for i in inputs],
        "rows": total,
        "by_status": by_status,
        "by_kind": by_kind,
        "ledger": str(path),
        "ledger_sha256": sha256_file(path),
    }


def ingest_files(
    paths: Sequence[str | Path],
    batch_id: str,
    ledger_dir: str | Path,
    catalog: Catalog,
    key: bytes,
    chunk_rows: int = CHUNK_ROWS,
) -> pd.DataFrame:
    """The core: validate `paths` as batch `batch_id`, write its ledger file, return it
    (one row per input row; nothing moves). For very large batches prefer ingest_batch,
    which returns a summary instead of the rows."""
    _ingest(paths, batch_id, ledger_dir, catalog, key, chunk_rows)
    return pq.read_table(requests_path(ledger_dir, batch_id)).to_pandas()


def ingest_batch(
    inbox_dir: str | Path,
    batches_dir: str | Path,
    ledger_dir: str | Path,
    catalog: Catalog,
    key: bytes,
    now: datetime | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> dict:
    """Take every pending inbox file as one batch (id from `now`, UTC): validate, record
    one status per row in the ledger, then archive the files under the batch.

    Returns a summary: batch_id, files (name, rows, sha256), rows, by_status, by_kind
    (kind -> status -> count; `invalid` for rows without a valid kind), ledger path and hash.
    An empty inbox changes nothing and returns batch_id None. A file that cannot be read
    raises DataError and changes nothing."""
    inbox_dir, batches_dir, ledger_dir = Path(inbox_dir), Path(batches_dir), Path(ledger_dir)
    recovered = finish_interrupted_moves(inbox_dir, batches_dir, ledger_dir)
    files = pending_files(inbox_dir)
    if not files:
        return {
            "batch_id": None,
            "files": [],
            "rows": 0,
            "by_status": {s: 0 for s in INGEST_STATUSES},
            "by_kind": {},
            "recovered": recovered,
        }
    batch_id = new_batch_id(now if now is not None else datetime.now(UTC))
    summary = _ingest(files, batch_id, ledger_dir, catalog, key, chunk_rows)
    archived = take_inbox(inbox_dir, batches_dir, batch_id, files)
    summary["archived"] = [str(p) for p in archived]
    summary["recovered"] = recovered
    return summary
