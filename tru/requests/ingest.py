"""Ingest deletion requests: read the inbox, validate every row, record one status per row.

Flow of `ingest_batch` (crash-safe: nothing changes unless everything was read):

1. list the inbox (sorted; dotfiles and partial uploads `*.part`/`*.tmp`/... are skipped);
2. stream every file in chunks (JSON Lines line by line, CSV record by record, Parquet
   batch by batch) and validate each chunk: schema and formats with Great Expectations,
   then the targets against the dataset (`Catalog`) and the ledger's earlier batches;
3. write the batch's ledger file `<ledger_dir>/<batch_id>/requests.parquet` atomically, one
   row per input row (the count is asserted);
4. only then move the input files to `<batches_dir>/<batch_id>/input/` (never deleted).

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

import csv
import errno
import io
import json
import logging
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tru.errors import DataError
from tru.io import read_json, sha256_file
from tru.requests.ledger import (
    LedgerWriter,
    batch_ids,
    batch_metadata,
    batch_time,
    check_batch_id,
    iso_utc,
    new_batch_id,
    read_ledger,
    requests_path,
)
from tru.requests.pseudonym import subject as make_subject
from tru.requests.schema import (
    ACCEPTED,
    ALREADY_ERASED,
    ERASED,
    FIELDS,
    ID_REGEX,
    INGEST_STATUSES,
    KINDS,
    LEDGER_SCHEMA,
    MAX_ID_LEN,
    MAX_LINE_BYTES,
    MAX_REASON_LEN,
    NEEDS_ITEM,
    NEEDS_USER,
    PATHLIKE_REGEX,
    REJECTED,
    REQUEST_ID_REGEX,
)

log = logging.getLogger(__name__)

CHUNK_ROWS = 50_000
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".swp", ".lock")
INPUT_DIR = "input"
_META = ("source", "line", "pre", "absent")  # per-row bookkeeping next to FIELDS
_LEDGER_TEXT_LIMIT = 256  # raw values longer than this (rejected anyway) are clipped in the ledger


# ====================================================================== catalog


class Catalog:
    """What exists in the dataset: raw user ids, raw item ids (position = dataset index) and
    the (user, item) interaction pairs of all splits. Build it from the original dataset,
    not from a retain split, so every earlier request stays resolvable."""

    def __init__(self, user_ids: Sequence[str], item_ids: Sequence[str], pairs: np.ndarray):
        self.users = self._index(user_ids, "user")
        self.items = self._index(item_ids, "item")
        self.n_users, self.n_items = len(self.users), len(self.items)
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        if len(pairs) and ((pairs.min(0) < 0).any() or pairs[:, 0].max() >= self.n_users or pairs[:, 1].max() >= self.n_items):
            raise DataError(f"catalog: interaction pairs out of range for {self.n_users} users and {self.n_items} items")
        self._codes = np.unique(pairs[:, 0] * max(self.n_items, 1) + pairs[:, 1])

    @staticmethod
    def _index(ids: Sequence[str], what: str) -> pd.Index:
        values = [str(v) for v in ids]
        index = pd.Index(values, dtype=object)
        if not index.is_unique:
            dup = int(index.duplicated().sum())
            raise DataError(f"catalog: {dup} {what} raw id(s) appear more than once in the {what} map")
        return index

    @classmethod
    def from_dataset(cls, dataset_dir: str | Path, split_dir: str | Path) -> "Catalog":
        """From a dataset folder's user_map.tsv / item_map.tsv (raw id -> index; without a
        map the raw id is the index as a string, as in plain MMRec folders) and the split's
        train/valid/test pairs."""
        dataset_dir, split_dir = Path(dataset_dir), Path(split_dir)
        meta_path = split_dir / "split.json"
        if not meta_path.is_file():
            raise DataError(f"{meta_path}: not found (run `tru split` first)")
        meta = read_json(meta_path)
        n_users, n_items = int(meta["n_users"]), int(meta["n_items"])
        canary = meta.get("canary") or {}  # the backdoor canary's fake users follow the real ones
        fake = list(canary.get("raw_ids", []))
        user_ids = cls._read_map(dataset_dir / "user_map.tsv", "userID", n_users - len(fake)) + fake
        item_ids = cls._read_map(dataset_dir / "item_map.tsv", "itemID", n_items)
        parts = []
        for split in ("train", "valid", "test"):
            path = split_dir / f"{split}.parquet"
            if not path.is_file():
                raise DataError(f"{path}: split file not found (run `tru split` first)")
            parts.append(pd.read_parquet(path, columns=["user", "item"]).to_numpy(dtype=np.int64).reshape(-1, 2))
        return cls(user_ids, item_ids, np.concatenate(parts))

    @staticmethod
    def _read_map(path: Path, id_col: str, n: int) -> list[str]:
        if not path.is_file():
            return [str(i) for i in range(n)]
        df = pd.read_csv(path, sep="\t", dtype={"raw_id": str}, keep_default_na=False)
        if id_col not in df.columns or "raw_id" not in df.columns:
            raise DataError(f"{path}: needs columns {id_col} and raw_id")
        if len(df) != n or not np.array_equal(np.sort(df[id_col].to_numpy()), np.arange(n)):
            raise DataError(f"{path}: must map exactly the ids 0..{n - 1} of the split ({len(df)} rows)")
        return df.sort_values(id_col)["raw_id"].astype(str).tolist()

    def user_index(self, raw: Sequence[str | None]) -> np.ndarray:
        """Dataset index of each raw user id, -1 where unknown or missing."""
        return self.users.get_indexer(pd.Index(list(raw), dtype=object)).astype(np.int64)

    def item_index(self, raw: Sequence[str | None]) -> np.ndarray:
        return self.items.get_indexer(pd.Index(list(raw), dtype=object)).astype(np.int64)

    def has_pair(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (user index, item index) pair is an interaction of the dataset."""
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        ok = (users >= 0) & (items >= 0)
        codes = np.where(ok, users * max(self.n_items, 1) + items, -1)
        pos = np.searchsorted(self._codes, codes)
        pos = np.minimum(pos, max(len(self._codes) - 1, 0))
        found = self._codes[pos] == codes if len(self._codes) else np.zeros(len(codes), bool)
        return ok & found


# ====================================================================== inbox


def pending_files(inbox_dir: str | Path) -> list[Path]:
    """Files waiting in the inbox, sorted by name. Dotfiles, folders and partial uploads
    (`*.part`, `*.tmp`, ...) are skipped; any other file is an input (an unsupported
    extension then fails the ingest with a clear error rather than being ignored)."""
    inbox_dir = Path(inbox_dir)
    if not inbox_dir.is_dir():
        return []
    return sorted(
        p
        for p in inbox_dir.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.lower().endswith(PARTIAL_SUFFIXES)
    )


def _move(src: Path, dst: Path) -> None:
    """Move without ever overwriting or deleting data (copy + rename across file systems)."""
    if dst.exists():
        raise DataError(f"{dst}: already exists; not overwriting an archived input")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dst)
    except OSError as err:
        if err.errno != errno.EXDEV:  # another file system: copy, rename, then unlink
            raise
        tmp = dst.with_name(f".{dst.name}.moving")
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
        os.unlink(src)


def take_inbox(inbox_dir: str | Path, batches_dir: str | Path, batch_id: str, files: Sequence[Path] | None = None) -> list[Path]:
    """Archive inbox files under `<batches_dir>/<batch_id>/input/` (os.replace; never deletes
    or overwrites). `files` defaults to everything pending. Returns the archived paths.
    Call it only after the batch's ledger file is written."""
    check_batch_id(batch_id)
    files = pending_files(inbox_dir) if files is None else [Path(f) for f in files]
    dest = Path(batches_dir) / batch_id / INPUT_DIR
    moved = []
    for src in files:
        dst = dest / src.name
        _move(src, dst)
        moved.append(dst)
    return moved


def finish_interrupted_moves(inbox_dir: Path, batches_dir: Path, ledger_dir: Path) -> list[str]:
    """An ingest that crashed after writing its ledger file but before archiving every input
    leaves recorded files in the inbox. Finish those moves (matched by name and SHA-256 to
    the batch's recorded inputs) instead of ingesting them a second time."""
    pending = pending_files(inbox_dir)
    if not pending:
        return []
    recorded: dict[tuple[str, str], str] = {}  # (name, sha256) -> the latest batch that read it
    for b in batch_ids(ledger_dir):
        for inp in batch_metadata(ledger_dir, b).get("inputs", []):
            recorded[(inp["name"], inp["sha256"])] = b
    names = {name for name, _ in recorded}
    done = []
    for p in pending:
        if p.name not in names:
            continue
        batch = recorded.get((p.name, sha256_file(p)))
        if batch is not None and not (batches_dir / batch / INPUT_DIR / p.name).exists():
            _move(p, batches_dir / batch / INPUT_DIR / p.name)
            done.append(f"{p.name} -> {batch}")
    return done


# ====================================================================== readers


def _frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(FIELDS) + list(_META), dtype=object)  # dtype=object keeps None as None


def _bad_row(source: str, line: int, why: str) -> tuple:
    return (None,) * len(FIELDS) + (source, line, why, "")


def _json_type(v: object) -> str:
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, bytes):
        return "binary"
    return type(v).__name__


class _DuplicateKey(ValueError):
    pass


def _pairs_hook(pairs: list[tuple[str, object]]) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        keys = [k for k, _ in pairs]
        dup = [f for f in FIELDS if keys.count(f) > 1]
        if dup:
            raise _DuplicateKey(dup[0])
    return d


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs_hook)


def _read_jsonl(path: Path, source: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    rows: list[tuple] = []
    lineno = 0
    with open(path, "rb") as f:
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            lineno += 1
            if len(raw) > MAX_LINE_BYTES:
                while raw and not raw.endswith(b"\n"):  # skip the rest of the line, unread
                    raw = f.readline(MAX_LINE_BYTES)
                rows.append(_bad_row(source, lineno, f"line {lineno}: longer than {MAX_LINE_BYTES >> 20} MiB"))
            else:
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                if not raw.strip():
                    continue  # blank lines are not rows
                rows.append(_parse_json_line(raw, source, lineno))
            if len(rows) >= chunk_rows:
                yield _frame(rows)
                rows = []
    if rows:
        yield _frame(rows)


def _parse_json_line(raw: bytes, source: str, lineno: int) -> tuple:
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        return _bad_row(source, lineno, f"line {lineno}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at byte {err.start + 1})")
    try:
        obj = _DECODER.decode(text)
    except _DuplicateKey as err:
        return _bad_row(source, lineno, f"line {lineno}: key {err.args[0]} appears more than once")
    except json.JSONDecodeError as err:
        return _bad_row(source, lineno, f"line {lineno}: not valid JSON ({err.msg} at column {err.colno})")
    except RecursionError:
        return _bad_row(source, lineno, f"line {lineno}: not valid JSON (nested too deeply)")
    if not isinstance(obj, dict):
        return _bad_row(source, lineno, f"line {lineno}: not a JSON object (got {_json_type(obj)})")
    g = obj.get
    return (g("request_id"), g("kind"), g("user_id"), g("item_id"), g("received_at"), g("reason"), source, lineno, None, "")


def _read_csv(path: Path, source: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    old_limit = csv.field_size_limit(MAX_LINE_BYTES)
    try:
        with open(path, "rb") as fb:
            text = io.TextIOWrapper(fb, encoding="utf-8-sig", errors="surrogateescape", newline="")
            reader = csv.reader(text)
            try:
                header = next(reader, None)
                while header is not None and not any(h.strip() for h in header):
                    header = next(reader, None)  # leading blank lines
            except csv.Error as err:
                raise DataError(f"{path}: the CSV header cannot be parsed ({err})") from None
            if header is None:
                return  # empty file: zero rows
            header = [h.strip() for h in header]
            try:
                "".join(header).encode("utf-8")
            except UnicodeEncodeError:
                raise DataError(f"{path}: the CSV header is not valid UTF-8") from None
            dup = sorted({h for h in header if h in FIELDS and header.count(h) > 1})
            if dup:
                raise DataError(f"{path}: the CSV header names column {dup[0]} more than once")
            pos = {f: header.index(f) for f in FIELDS if f in header}
            absent = ",".join(f for f in FIELDS if f not in pos)
            width = len(header)
            rows: list[tuple] = []
            while True:
                before = reader.line_num
                try:
                    rec = next(reader)
                except StopIteration:
                    break
                except csv.Error as err:
                    if reader.line_num == before:
                        raise DataError(f"{path}: CSV parsing stalled at line {before + 1} ({err})") from None
                    rows.append(_bad_row(source, reader.line_num, f"line {reader.line_num}: not valid CSV ({err})"))
                    continue
                line = reader.line_num
                if not rec or (len(rec) == 1 and not rec[0].strip()):
                    continue  # blank line
                try:
                    "".join(rec).encode("utf-8")
                except UnicodeEncodeError:
                    rows.append(_bad_row(source, line, f"line {line}: not valid UTF-8"))
                    continue
                if len(rec) != width:
                    rows.append(_bad_row(source, line, f"line {line}: has {len(rec)} fields, the header has {width}"))
                    continue
                rows.append(tuple(rec[pos[f]] if f in pos else None for f in FIELDS) + (source, line, None, absent))
                if len(rows) >= chunk_rows:
                    yield _frame(rows)
                    rows = []
            if rows:
                yield _frame(rows)
    finally:
        csv.field_size_limit(old_limit)


def _arrow_values(col: pa.ChunkedArray | pa.Array, name: str) -> list:
    t = col.type
    if name == "received_at" and (pa.types.is_timestamp(t) or pa.types.is_date(t)):
        s = col.to_pandas()
        if pa.types.is_date(t):
            s = pd.to_datetime(s)
        s = pd.Series(s)
        if s.dt.tz is None:
            s = s.dt.tz_localize("UTC")
        text = s.dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return [None if pd.isna(v) else v for v in text]
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
    return col.to_pylist()


def _read_parquet(path: Path, source: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        cols = [f for f in FIELDS if f in names]
        absent = ",".join(f for f in FIELDS if f not in cols)
        row = 0
        if not cols:
            batches = (pa.table({"_": pa.nulls(min(chunk_rows, pf.metadata.num_rows - s))}) for s in range(0, pf.metadata.num_rows, chunk_rows))
        else:
            batches = pf.iter_batches(batch_size=chunk_rows, columns=cols)
        for batch in batches:
            n = batch.num_rows
            data = {f: _arrow_values(batch.column(f), f) if f in cols else [None] * n for f in FIELDS}
            lines = range(row + 1, row + n + 1)
            row += n
            columns = {**data, "source": [source] * n, "line": list(lines), "pre": [None] * n, "absent": [absent] * n}
            yield pd.DataFrame({c: pd.Series(columns[c], dtype=object) for c in list(FIELDS) + list(_META)})
    except (pa.ArrowException, OSError) as err:
        msg = str(err).splitlines()[0][:200] if str(err) else err.__class__.__name__
        raise DataError(f"{path}: not a readable Parquet file ({msg})") from None


def _reader(path: Path):
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unsupported file type {path.suffix or '(no extension)'!r}; use .jsonl, .ndjson, .csv or .parquet")
    return {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}[fmt]


def _stream(paths: Sequence[Path], chunk_rows: int, counts: dict[str, int]) -> Iterator[pd.DataFrame]:
    """Chunks of about `chunk_rows` rows across all files (small files share a chunk)."""
    buf: list[pd.DataFrame] = []
    n = 0
    for path in paths:
        read = _reader(path)
        counts[path.name] = 0
        try:
            for frame in read(path, path.name, chunk_rows):
                counts[path.name] += len(frame)
                buf.append(frame)
                n += len(frame)
                if n >= chunk_rows:
                    yield pd.concat(buf, ignore_index=True)
                    buf, n = [], 0
        except OSError as err:
            raise DataError(f"{path}: cannot be read ({err.strerror or err.__class__.__name__})") from None
    if buf:
        yield pd.concat(buf, ignore_index=True)


# ====================================================================== schema checks (GX)


def _show_kind(v: object) -> str:
    """Echo a bad kind only when it cannot carry personal data (short lowercase word)."""
    if isinstance(v, str) and 0 < len(v) <= 20 and v.replace("_", "").isalpha() and v.isascii():
        return f"kind '{v}'"
    return "kind"


def _request_id_problem(v: str) -> str:
    if len(v) > MAX_ID_LEN:
        return f"request_id is longer than {MAX_ID_LEN} characters"
    if re.search(PATHLIKE_REGEX, v):
        return "request_id must not look like a path (no '..', no leading '.')"
    return "request_id may only contain letters, digits and . _ : -"


def _id_problem(field_: str, v: str) -> str:
    if len(v) > MAX_ID_LEN:
        return f"{field_} is longer than {MAX_ID_LEN} characters"
    return f"{field_} must be printable characters without leading or trailing spaces"


def _expectations():
    """(field, column checked, GX expectation class, kwargs, message(row) -> str).

    GX finds the failing rows; the message explains the failure for each of them (row:
    the cleaned values of the row plus `absent`, the columns its file lacks). Which ids a
    kind requires is checked apart, vectorised (`_kind_rules`): as GX row conditions those
    four checks cost a third of the validation time at 1M rows."""
    kinds = ", ".join(KINDS)

    def missing(field_):
        return lambda r: f"missing column {field_}" if field_ in r["absent"] else f"{field_} is missing"

    def ident(field_):
        return (field_, field_, "ExpectColumnValuesToMatchRegex", {"regex": ID_REGEX}, lambda r: _id_problem(field_, r[field_]))

    return [
        ("request_id", "request_id", "ExpectColumnValuesToNotBeNull", {}, missing("request_id")),
        ("request_id", "request_id", "ExpectColumnValuesToMatchRegex", {"regex": REQUEST_ID_REGEX},
         lambda r: _request_id_problem(r["request_id"])),
        ("kind", "kind", "ExpectColumnValuesToNotBeNull", {}, missing("kind")),
        ("kind", "kind", "ExpectColumnValuesToBeInSet", {"value_set": list(KINDS)},
         lambda r: f"{_show_kind(r['kind'])} is not one of {kinds}"),
        ident("user_id"),
        ident("item_id"),
        ("received_at", "received_at_utc", "ExpectColumnValuesToNotBeNull", {},
         lambda r: missing("received_at")(r) if r["received_at"] is None else "received_at is not an ISO-8601 timestamp"),
        ("reason", "reason", "ExpectColumnValueLengthsToBeBetween", {"min_value": 0, "max_value": MAX_REASON_LEN},
         lambda r: f"reason is longer than {MAX_REASON_LEN} characters"),
    ]


def _iso_utc_strings(values: np.ndarray) -> np.ndarray:
    """UTC datetime64 values as `2026-11-28T23:00:00Z` (microseconds only when non-zero)."""
    values = values.astype("datetime64[us]")
    whole = values == values.astype("datetime64[s]")
    out = np.empty(len(values), dtype=object)
    out[whole] = [t + "Z" for t in np.datetime_as_string(values[whole], unit="s").tolist()]
    out[~whole] = [t + "Z" for t in np.datetime_as_string(values[~whole], unit="us").tolist()]
    return out


def _kind_rules(clean: dict[str, np.ndarray], absent: np.ndarray, has_pre: np.ndarray, msgs: dict[str, np.ndarray]) -> None:
    """user_id is required for user/interaction and must be empty for item; item_id is
    required for item/interaction and must be empty for user (first message per field wins)."""
    kind = clean["kind"].astype(str)
    for field_, needs, forbidden in (("user_id", NEEDS_USER, "item"), ("item_id", NEEDS_ITEM, "user")):
        present = np.not_equal(clean[field_], None)
        slot = msgs[field_]
        free = np.equal(slot, None) & ~has_pre
        for i in np.flatnonzero(np.isin(kind, needs) & ~present & free):
            lacks = isinstance(absent[i], str) and field_ in absent[i].split(",")
            slot[i] = f"missing column {field_}" if lacks else f"{field_} is required for kind {kind[i]}"
        for i in np.flatnonzero((kind == forbidden) & present & free):
            slot[i] = f"{field_} must be empty for kind {forbidden}"


class _SchemaValidator:
    """One GX ephemeral context and suite, run on every chunk (GX imported lazily)."""

    def __init__(self) -> None:
        from tru.data.validate import _gx

        gx, gxe, ProgressBarsConfig = _gx()
        self.specs = _expectations()
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        source = context.data_sources.add_pandas(name="requests")
        batch_definition = source.add_dataframe_asset(name="chunk").add_batch_definition_whole_dataframe("chunk")
        suite = context.suites.add(gx.ExpectationSuite(name="deletion_requests"))
        self._by_id = {}
        for i, (field_, column, factory, kwargs, message) in enumerate(self.specs):
            exp = getattr(gxe, factory)(column=column, **kwargs, meta={"spec": i})
            suite.add_expectation(exp)
        self.definition = context.validation_definitions.add(
            gx.ValidationDefinition(name="deletion_requests", data=batch_definition, suite=suite)
        )

    def failures(self, frame: pd.DataFrame) -> Iterator[tuple[int, np.ndarray]]:
        """(spec index, failing row positions) for every failed expectation."""
        outcome = self.definition.run(batch_parameters={"dataframe": frame}, result_format={"result_format": "COMPLETE"})
        for r in outcome.results:
            if r.exception_info and r.exception_info.get("raised_exception"):
                raise RuntimeError(f"request validation could not run {r.expectation_config.type}: {r.exception_info.get('exception_message')}")
            if r.success:
                continue
            spec = int(r.expectation_config.meta["spec"])
            idx = np.asarray((r.result or {}).get("unexpected_index_list") or [], dtype=np.int64)
            yield spec, idx


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
    def load(cls, ledger_dir: Path, batch_id: str, key: bytes) -> "_State":
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
        if kind == "interaction" and (uid, iid) in self.erased_pairs:
            return f"interaction already erased in batch {self.erased_pairs[(uid, iid)]}"
        return None


# ====================================================================== chunk processing


def _ledger_text(values: np.ndarray, limit: int) -> pa.Array:
    """Cleaned strings as the ledger stores them: values longer than `limit` (rejected
    anyway) are clipped so one oversize field cannot bloat the ledger."""
    arr = pa.array(values, pa.string())
    too_long = pc.greater(pc.utf8_length(arr), limit)
    if pc.any(too_long).as_py():
        arr = pc.if_else(too_long, pc.binary_join_element_wise(pc.utf8_slice_codeunits(arr, 0, limit), "…", ""), arr)
    return arr


def _clean(values: np.ndarray, field_: str, msgs: dict[str, np.ndarray]) -> np.ndarray:
    """Strings stay (empty -> None); anything else is a type error for that row."""
    out = np.empty(len(values), dtype=object)
    bad = msgs[field_]
    for i, v in enumerate(values):
        if v is None or v == "":
            out[i] = None
        elif type(v) is str:
            if not v.isascii():
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    bad[i] = f"{field_} holds an invalid character (a lone surrogate)"
                    out[i] = None
                    continue
            out[i] = v
        else:
            if isinstance(v, float) and v != v:  # NaN from a null in a frame
                out[i] = None
                continue
            bad[i] = f"{field_} must be a string, not {_json_type(v)}"
            out[i] = None
    return out


class _Processor:
    def __init__(self, batch_id: str, catalog: Catalog, key: bytes, state: _State):
        self.batch_id = batch_id
        self.recorded_at = iso_utc(batch_time(batch_id))
        self.catalog = catalog
        self.key = key
        self.state = state
        self.gx = _SchemaValidator()
        self.counts: Counter = Counter()
        self.timing: Counter = Counter()  # seconds per phase, logged at DEBUG

    def process(self, df: pd.DataFrame) -> pa.Table:
        tick = time.perf_counter()
        n = len(df)
        msgs = {f: np.full(n, None, dtype=object) for f in FIELDS}
        pre = df["pre"].to_numpy(object)
        has_pre = np.fromiter((isinstance(p, str) for p in pre), dtype=bool, count=n)

        clean = {f: _clean(df[f].to_numpy(object), f, msgs) for f in FIELDS}
        ts = pd.to_datetime(pd.Series(clean["received_at"], dtype=object), format="ISO8601", utc=True, errors="coerce")
        kind, uid, iid, rids = clean["kind"], clean["user_id"], clean["item_id"], clean["request_id"]

        # schema and formats: Great Expectations, on the rows that parsed (index = row position)
        live = np.flatnonzero(~has_pre)
        frame = pd.DataFrame({f: pd.Series(clean[f][live], index=live, dtype=object) for f in FIELDS})
        frame["received_at_utc"] = ts.iloc[live].set_axis(live)
        self.timing["prepare"] += time.perf_counter() - tick
        tick = time.perf_counter()
        if len(live):
            absent = df["absent"].to_numpy(object)
            for spec, idx in self.gx.failures(frame):
                field_, _, _, _, message = self.gx.specs[spec]
                slot = msgs[field_]
                for i in idx:
                    if slot[i] is None:
                        row = {f: clean[f][i] for f in FIELDS}
                        row["absent"] = absent[i].split(",") if isinstance(absent[i], str) else ()
                        slot[i] = message(row)
        self.timing["gx"] += time.perf_counter() - tick
        tick = time.perf_counter()
        _kind_rules(clean, df["absent"].to_numpy(object), has_pre, msgs)

        bad_field = {f: np.not_equal(msgs[f], None) for f in FIELDS}
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
            received[ok_ts] = _iso_utc_strings(ts.to_numpy()[ok_ts] if ts.dt.tz is None else ts.dt.tz_convert(None).to_numpy()[ok_ts])
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
                    status[i], reason[i] = ALREADY_ERASED, f"duplicate request_id (first recorded in batch {pb}); {erased}"
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
    paths = [Path(p) for p in paths]
    names = [p.name for p in paths]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"two input files are both named {dup[0]}; file names must be unique within a batch")
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p}: input file not found")
        _reader(p)  # unsupported type: fail before reading anything
    return paths


def _ingest(paths: Sequence[str | Path], batch_id: str, ledger_dir: str | Path, catalog: Catalog, key: bytes,
            chunk_rows: int = CHUNK_ROWS) -> dict:
    """Validate every row of `paths` and write the batch's ledger file; returns a summary.
    Streams: memory is bounded by the chunk size plus the per-request state (ids seen)."""
    check_batch_id(batch_id)
    ledger_dir = Path(ledger_dir)
    paths = _check_paths(paths)
    if requests_path(ledger_dir, batch_id).exists():
        raise DataError(f"{requests_path(ledger_dir, batch_id)}: batch {batch_id} is already in the ledger")
    if any(b >= batch_id for b in batch_ids(ledger_dir)):
        raise DataError(f"{ledger_dir}: a batch at or after {batch_id} is already recorded; batch ids must increase")
    inputs = [{"name": p.name, "sha256": sha256_file(p)} for p in paths]
    state = _State.load(ledger_dir, batch_id, key)
    rows_in: dict[str, int] = {}
    proc = None
    with LedgerWriter(ledger_dir, batch_id) as writer:
        for chunk in _stream(paths, chunk_rows, rows_in):
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
        log.debug("ingest %s: %d rows; seconds per phase %s", batch_id, total, {k: round(v, 2) for k, v in proc.timing.items()})
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


def ingest_files(paths: Sequence[str | Path], batch_id: str, ledger_dir: str | Path, catalog: Catalog, key: bytes,
                 chunk_rows: int = CHUNK_ROWS) -> pd.DataFrame:
    """The core: validate `paths` as batch `batch_id`, write its ledger file, return it
    (one row per input row; nothing moves). For very large batches prefer ingest_batch,
    which returns a summary instead of the rows."""
    _ingest(paths, batch_id, ledger_dir, catalog, key, chunk_rows)
    import pyarrow.parquet as pq

    return pq.read_table(requests_path(ledger_dir, batch_id)).to_pandas()


def ingest_batch(inbox_dir: str | Path, batches_dir: str | Path, ledger_dir: str | Path, catalog: Catalog, key: bytes,
                 now: datetime | None = None, chunk_rows: int = CHUNK_ROWS) -> dict:
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
        return {"batch_id": None, "files": [], "rows": 0, "by_status": {s: 0 for s in INGEST_STATUSES}, "by_kind": {},
                "recovered": recovered}
    batch_id = new_batch_id(now if now is not None else datetime.now(timezone.utc))
    summary = _ingest(files, batch_id, ledger_dir, catalog, key, chunk_rows)
    archived = take_inbox(inbox_dir, batches_dir, batch_id, files)
    summary["archived"] = [str(p) for p in archived]
    summary["recovered"] = recovered
    return summary
