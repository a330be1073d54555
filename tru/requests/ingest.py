"""Ingest deletion requests: validate every row of a batch's files, record one status per row.

Flow of `ingest_batch` (crash-safe: nothing changes unless everything was read):

1. list the inbox (sorted; dotfiles are ignored, partial uploads `*.part`/`*.tmp`/... stay
   with a warning; symlinks, folders and other non-regular entries are quarantined without
   being followed, `tru.requests.inbox`);
2. stream every file in chunks (`tru.requests.readers`: JSON Lines line by line, CSV record
   by record, Parquet batch by batch) and validate each chunk: schema and formats with
   Great Expectations (`tru.requests.checks`), then the targets against the dataset
   (`Catalog`) and the ledger's earlier batches;
3. write the batch's ledger file `<ledger_dir>/<batch_id>/requests.parquet` atomically, one
   row per input row (the count is asserted); a batch without a single row is not created;
4. only then move the input files to `<batches_dir>/<batch_id>/input/` (`tru.requests.inbox`;
   never deleted).

A row-level problem rejects that row with a reason a person understands. A file that cannot
be read as a whole (UnreadableFile: unknown extension, I/O error, corrupt Parquet, a
duplicated column, UTF-16 without a byte-order mark, an unterminated CSV quote, ...) is
moved to quarantine (`<quarantine_dir>/<batch_id>/<name>` with `<name>.reason.txt`, a
warning is logged) and the batch goes on without it; without a quarantine folder
(`quarantine_dir=None`, the library default) it raises DataError and nothing changes.

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
The requester's `reason` never decides a status: one longer than MAX_REASON_LEN (2000)
characters is stored truncated (its first 2000 characters and `…`), and a row that is not
rejected says so in its `reason`.
A request_id first seen on a rejected row may be sent again (corrected) and is then judged
on its own.

Backdoor declarations (inbox files named `backdoors*`, `tru.requests.backdoors`) are read
first, whole: their fake_user rows join the batch as user requests after the request files'
rows (judged by the rules above), and their trigger and target items go to
`<ledger_dir>/<batch_id>/backdoors.json`, written after every file was read and before the
ledger file (whose metadata marks the declaration inputs, so a stale backdoors.json of a
crashed run is never taken for the batch's).
"""

from __future__ import annotations

import itertools
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
from tru.requests.backdoors import (
    Declarations,
    backdoors_path,
    check_declaration,
    is_declaration,
    write_backdoors,
)
from tru.requests.catalog import Catalog
from tru.requests.checks import SchemaValidator, clean_values, kind_rules
from tru.requests.inbox import finish_interrupted_moves, pending_files, quarantine, refused_entries, take_inbox
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
from tru.requests.pseudonym import key_fingerprint
from tru.requests.pseudonym import subject as make_subject
from tru.requests.readers import UnreadableFile, check_file, one_line, read_chunks, reader_for
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

    def __init__(
        self, batch_id: str, catalog: Catalog, key: bytes, state: _State, schema: SchemaValidator | None = None
    ):
        self.batch_id = batch_id
        self.recorded_at = iso_utc(batch_time(batch_id))
        self.catalog = catalog
        self.key = key
        self.state = state
        self.schema = schema if schema is not None else SchemaValidator()
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
        note = f"request reason truncated to its first {MAX_REASON_LEN} characters"
        for j, text in enumerate(clean["reason"]):  # never a reason to refuse: stored truncated, and said so
            if text is not None and len(text) > MAX_REASON_LEN and status[j] != REJECTED:
                reason[j] = note if reason[j] is None else f"{reason[j]}; {note}"
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
        if is_declaration(p):
            check_declaration(p, open_it=False)
        else:
            reader_for(p)  # unsupported type: UnreadableFile before reading anything
    return files


def _check_new_batch(ledger_dir: Path, batch_id: str) -> None:
    """DataError unless `batch_id` is well-formed, not in the ledger yet and after every batch there."""
    check_batch_id(batch_id)
    if requests_path(ledger_dir, batch_id).exists():
        raise DataError(f"{requests_path(ledger_dir, batch_id)}: batch {batch_id} is already in the ledger")
    if any(b >= batch_id for b in batch_ids(ledger_dir)):
        raise DataError(f"{ledger_dir}: a batch at or after {batch_id} is already recorded; batch ids must increase")


class _LazySchema:
    """The Great Expectations suite, built on first use (seconds) and reused by every attempt
    of one ingest (a retry after a file was quarantined does not build it again)."""

    def __init__(self) -> None:
        self._validator: SchemaValidator | None = None

    def get(self) -> SchemaValidator:
        if self._validator is None:
            self._validator = SchemaValidator()
        return self._validator


def _ingest(
    paths: Sequence[str | Path],
    batch_id: str,
    ledger_dir: str | Path,
    catalog: Catalog,
    key: bytes,
    chunk_rows: int = CHUNK_ROWS,
    schema: _LazySchema | None = None,
    signing_key: str | None = None,
) -> dict:
    """Validate every row of `paths` and write the batch's ledger file; returns a summary
    (`ledger` None, and no file written, when the files hold no row at all). Streams: memory
    is bounded by the chunk size plus the per-request state (ids seen). A file that cannot be
    read raises UnreadableFile and nothing is written."""
    ledger_dir = Path(ledger_dir)
    _check_new_batch(ledger_dir, batch_id)
    paths = _check_paths(paths)
    inputs: list[dict[str, Any]] = []
    for p in paths:
        try:
            inputs.append(
                {"name": p.name, "sha256": sha256_file(p)} | ({"backdoors": True} if is_declaration(p) else {})
            )
        except OSError as err:
            raise UnreadableFile(p, f"cannot be read ({err.strerror or err.__class__.__name__})") from None
    state = _State.load(ledger_dir, batch_id, key)
    schema = schema if schema is not None else _LazySchema()
    declared = [p for p in paths if is_declaration(p)]
    decl = Declarations.read(declared, catalog, state.erased_items) if declared else None
    rows_in: dict[str, int] = dict(decl.rows_per_file()) if decl is not None else {}
    chunks = read_chunks([p for p in paths if not is_declaration(p)], chunk_rows, rows_in)
    tagged = itertools.chain(
        ((False, c) for c in chunks), ((True, c) for c in (decl.frames(batch_id, chunk_rows) if decl else ()))
    )
    fake_user_statuses: Counter[str] = Counter()
    proc = None
    writer = None
    path = None
    record_path = None
    try:
        for from_declaration, chunk in tagged:
            if not len(chunk):
                continue
            if proc is None:
                proc = _Processor(batch_id, catalog, key, state, schema.get())
            if writer is None:  # only now: a batch without rows leaves no trace in the ledger
                writer = LedgerWriter(ledger_dir, batch_id)
            table = proc.process(chunk)
            if table.num_rows != len(chunk):
                raise RuntimeError(f"ingest lost rows in a chunk: {len(chunk)} read, {table.num_rows} statuses")
            if from_declaration:
                fake_user_statuses.update(table.column("status").to_pylist())
            writer.write(table)
        total = sum(rows_in.values())
        written = writer.rows if writer is not None else 0
        if written != total:
            raise RuntimeError(f"ingest lost rows: {total} read, {written} statuses written")
        for inp in inputs:
            inp["rows"] = rows_in.get(inp["name"], 0)
        if writer is not None:
            # a stale record of a crashed run with this batch id goes; the new one precedes the ledger file
            backdoors_path(ledger_dir, batch_id).unlink(missing_ok=True)
            if decl is not None:
                record = decl.record(batch_id, fake_user_statuses)
                record_path = write_backdoors(ledger_dir, batch_id, record)
            path = writer.close(
                inputs, dataset=catalog.dataset, pseudonym_key=key_fingerprint(key), signing_key=signing_key
            )
    finally:
        if writer is not None and path is None and record_path is not None:
            record_path.unlink(missing_ok=True)  # no ledger file, no record
        if writer is not None:
            writer.abort()  # a no-op once closed
    counts = proc.counts if proc is not None else Counter()
    if proc is not None:
        seconds = {k: round(v, 2) for k, v in proc.timing.items()}
        log.debug("ingest %s: %d rows; seconds per phase %s", batch_id, total, seconds)
    by_status = {s: sum(v for (k, st), v in counts.items() if st == s) for s in INGEST_STATUSES}
    by_kind: dict[str, dict[str, int]] = {}
    for (k, s), v in sorted(counts.items()):
        by_kind.setdefault(k, {st: 0 for st in INGEST_STATUSES})[s] = v
    summary = {
        "batch_id": batch_id,
        "files": [{"name": i["name"], "rows": i["rows"], "sha256": i["sha256"]} for i in inputs],
        "rows": total,
        "by_status": by_status,
        "by_kind": by_kind,
        "ledger": str(path) if path is not None else None,
        "ledger_sha256": sha256_file(path) if path is not None else None,
    }
    if record_path is not None and path is not None:
        _log_declaration(record)
        summary["backdoors"] = {
            "path": str(record_path),
            "fake_users": record["counts"]["fake_user"],
            "targets": len(record["targets"]),
            "triggers": len(record["triggers"]),
            "rejected": len(record["rejected"]),
        }
    return summary


def _log_declaration(record: dict) -> None:
    """A warning per rejected declaration row (a person fixes them), a line of counts."""
    for r in record["rejected"]:
        log.warning("%s line %d: %s; declaration row rejected", r["file"], r["line"], r["reason"])
    fake = record["counts"]["fake_user"]
    log.info(
        "backdoors of %s: fake accounts %s; %d target(s), %d trigger(s); %d row(s) rejected",
        record["batch_id"],
        ", ".join(f"{k} {v}" for k, v in fake.items()),
        len(record["targets"]),
        len(record["triggers"]),
        len(record["rejected"]),
    )
    if fake[REJECTED]:
        log.warning(
            "backdoors of %s: %d fake_user row(s) rejected (reasons in the ledger)", record["batch_id"], fake[REJECTED]
        )


def ingest_files(
    paths: Sequence[str | Path],
    batch_id: str,
    ledger_dir: str | Path,
    catalog: Catalog,
    key: bytes,
    chunk_rows: int = CHUNK_ROWS,
) -> pd.DataFrame:
    """The core: validate `paths` as batch `batch_id`, write its ledger file, return it
    (one row per input row; nothing moves). Files without a single row write nothing and
    return an empty frame. A file that cannot be read raises UnreadableFile (a DataError).
    For very large batches prefer ingest_batch, which returns a summary instead of the rows."""
    summary = _ingest(paths, batch_id, ledger_dir, catalog, key, chunk_rows)
    if summary["ledger"] is None:
        return LEDGER_SCHEMA.empty_table().to_pandas()
    return pq.read_table(requests_path(ledger_dir, batch_id)).to_pandas()


def _nothing(recovered: list[str], quarantined: list[dict], skipped: list[dict]) -> dict:
    return {
        "batch_id": None,
        "files": [],
        "rows": 0,
        "by_status": {s: 0 for s in INGEST_STATUSES},
        "by_kind": {},
        "recovered": recovered,
        "quarantined": quarantined,
        "skipped": skipped,
    }


def ingest_batch(
    inbox_dir: str | Path,
    batches_dir: str | Path,
    ledger_dir: str | Path,
    catalog: Catalog,
    key: bytes,
    now: datetime | None = None,
    chunk_rows: int = CHUNK_ROWS,
    quarantine_dir: str | Path | None = None,
    signing_key: str | None = None,
) -> dict:
    """Take every pending inbox file as one batch (id from `now`, UTC): validate, record
    one status per row in the ledger, then archive the files under the batch. `signing_key`:
    the fingerprint of the key that will sign the batch's evidence, recorded in the ledger.

    With `quarantine_dir` (what `tru ingest` and the nightly flow pass), a file that cannot be
    read, a symlink, a folder, and, when the batch holds no row at all, its empty files go to
    `<quarantine_dir>/<batch_id>/` with a one-line `<name>.reason.txt` and a logged warning;
    the other files are ingested. Without it (None) an unreadable file raises DataError and
    changes nothing, and refused entries stay in the inbox with a warning.

    Returns a summary: batch_id, files (name, rows, sha256), rows, by_status, by_kind
    (kind -> status -> count; `invalid` for rows without a valid kind), ledger path and hash,
    archived, recovered (moves finished for an interrupted batch), quarantined (name, reason,
    path: None when it could not be moved) and skipped (name, reason: left in the inbox);
    with a backdoor declaration also backdoors (path of backdoors.json, fake_users: status ->
    rows, targets, triggers, rejected: counts).
    An inbox without a single request row creates no batch: batch_id None."""
    inbox_dir, batches_dir, ledger_dir = Path(inbox_dir), Path(batches_dir), Path(ledger_dir)
    recovered = finish_interrupted_moves(inbox_dir, batches_dir, ledger_dir)
    refused = refused_entries(inbox_dir)
    files = pending_files(inbox_dir)
    quarantined: list[dict] = []
    skipped: list[dict] = []
    if not files and not refused:
        return _nothing(recovered, quarantined, skipped)
    batch_id = check_batch_id(new_batch_id(now if now is not None else datetime.now(UTC)))
    if files:
        _check_new_batch(ledger_dir, batch_id)  # before anything moves
    folder = Path(quarantine_dir) / batch_id if quarantine_dir is not None else None

    def refuse(path: Path, why: str) -> None:
        assert folder is not None
        try:
            dst = quarantine(path, folder, why)
        except (OSError, DataError) as err:
            log.warning("%s: %s; could not be quarantined (%s): left in the inbox", path, why, one_line(err))
            quarantined.append({"name": path.name, "reason": why, "path": None})
            return
        if dst is not None:
            log.warning("%s: %s; quarantined as %s", path, why, dst)
            quarantined.append({"name": path.name, "reason": why, "path": str(dst)})

    for path, why, move in refused:
        if move and folder is not None:
            refuse(path, why)
        else:
            log.warning("%s: %s; not ingested", path, why)
            skipped.append({"name": path.name, "reason": why})
    if folder is not None:
        for f in list(files):
            try:
                check_declaration(f) if is_declaration(f) else check_file(f)
            except UnreadableFile as err:
                refuse(f, err.why)
                files.remove(f)
    schema = _LazySchema()
    summary = None
    while files:
        try:
            summary = _ingest(files, batch_id, ledger_dir, catalog, key, chunk_rows, schema, signing_key)
            break
        except UnreadableFile as err:
            bad = next((f for f in files if f.name == err.path.name), None)
            if folder is None or bad is None:
                raise
            refuse(bad, err.why)
            files.remove(bad)
    if summary is None or summary["ledger"] is None:
        for f in files:
            why = (
                "declares no fake account and came without requests: no batch was created "
                "(drop a declaration into the inbox with the batch it belongs to)"
                if is_declaration(f)
                else "holds no requests (a batch needs at least one row; none was created)"
            )
            if folder is not None:
                refuse(f, why)
            else:
                log.warning("%s: %s; left in the inbox", f, why)
                skipped.append({"name": f.name, "reason": why})
        return _nothing(recovered, quarantined, skipped)
    archived = take_inbox(inbox_dir, batches_dir, batch_id, files)
    summary["archived"] = [str(p) for p in archived]
    summary["recovered"] = recovered
    summary["quarantined"] = quarantined
    summary["skipped"] = skipped
    return summary
