"""Streaming readers of request files, one per format: JSON Lines line by line, CSV record by
record, Parquet batch by batch. Memory stays bounded by the chunk size whatever the file size.

Each reader yields frames (dtype object, so None stays None) of at most `chunk_rows` rows with
the columns FIELDS, as read (types are checked later), plus per-row bookkeeping:
- `source`: the file name; `line`: the line (JSONL, CSV) or row (Parquet) number, from 1;
- `pre`: why the row was rejected while reading (invalid JSON, bad UTF-8, ...), else None;
- `absent`: the FIELDS the file has no column for, comma-separated.

A row that cannot be read is a row with a `pre` reason; only a file that cannot be read at
all (unknown extension, corrupt Parquet, I/O error, bad CSV header) raises DataError.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tru.errors import DataError
from tru.requests.schema import FIELDS, MAX_LINE_BYTES

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
_META = ("source", "line", "pre", "absent")  # per-row bookkeeping next to FIELDS


def _frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(FIELDS) + list(_META), dtype=object)  # dtype=object keeps None as None


def _bad_row(source: str, line: int, why: str) -> tuple:
    return (None,) * len(FIELDS) + (source, line, why, "")


def json_type(v: object) -> str:
    """How a non-string value is named in a message: `a number`, `a list`, `true/false`, ..."""
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


# ---------------------------------------------------------------------- JSON Lines


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
        where = f"byte 0x{raw[err.start]:02x} at byte {err.start + 1}"
        return _bad_row(source, lineno, f"line {lineno}: not valid UTF-8 ({where})")
    try:
        obj = _DECODER.decode(text)
    except _DuplicateKey as err:
        return _bad_row(source, lineno, f"line {lineno}: key {err.args[0]} appears more than once")
    except json.JSONDecodeError as err:
        return _bad_row(source, lineno, f"line {lineno}: not valid JSON ({err.msg} at column {err.colno})")
    except RecursionError:
        return _bad_row(source, lineno, f"line {lineno}: not valid JSON (nested too deeply)")
    if not isinstance(obj, dict):
        return _bad_row(source, lineno, f"line {lineno}: not a JSON object (got {json_type(obj)})")
    g = obj.get
    return (
        g("request_id"),
        g("kind"),
        g("user_id"),
        g("item_id"),
        g("received_at"),
        g("reason"),
        source,
        lineno,
        None,
        "",
    )


# ---------------------------------------------------------------------- CSV


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


# ---------------------------------------------------------------------- Parquet


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
    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        cols = [f for f in FIELDS if f in names]
        absent = ",".join(f for f in FIELDS if f not in cols)
        row = 0
        if not cols:
            total = pf.metadata.num_rows
            batches = (pa.table({"_": pa.nulls(min(chunk_rows, total - s))}) for s in range(0, total, chunk_rows))
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


# ---------------------------------------------------------------------- any format


def reader_for(path: Path) -> Callable[[Path, str, int], Iterator[pd.DataFrame]]:
    """The reader of `path`'s format, from its extension (FORMATS): a function (path, source
    name, chunk_rows) -> frames. Raises DataError for an unsupported extension."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"{path}: unsupported file type {path.suffix or '(no extension)'!r}; use .jsonl, .ndjson, .csv or .parquet"
        )
    return {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}[fmt]


def read_chunks(paths: Sequence[Path], chunk_rows: int, counts: dict[str, int]) -> Iterator[pd.DataFrame]:
    """Frames of about `chunk_rows` rows across all `paths`, in order (small files share a
    chunk). Fills `counts` with the rows read per file name. An I/O error raises DataError."""
    buf: list[pd.DataFrame] = []
    n = 0
    for path in paths:
        read = reader_for(path)
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
