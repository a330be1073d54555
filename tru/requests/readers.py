"""Streaming readers of request files, one per format: JSON Lines line by line, CSV record by
record, Parquet batch by batch. Memory stays bounded by the chunk size whatever the file size.

Each reader yields frames (dtype object, so None stays None) of at most `chunk_rows` rows with
the columns FIELDS, as read (types are checked later), plus per-row bookkeeping:
- `source`: the file name; `line`: the line (JSONL, CSV) or row (Parquet) number, from 1;
- `pre`: why the row was rejected while reading (invalid JSON, bad UTF-8, ...), else None;
- `absent`: the FIELDS the file has no column for, comma-separated.

A row that cannot be read is a row with a `pre` reason. A file whose rows cannot be told
apart, or that cannot be read at all, raises UnreadableFile (a DataError; ingest quarantines
the file): unknown extension, I/O error, corrupt Parquet or a duplicated column, UTF-16/32
text without a byte-order mark, a bad CSV header, an unterminated CSV quote or a quoted field
that swallows what look like other rows, a bare CR that may be a line break, several JSON
objects on one line.

Text files are UTF-8 (a UTF-8 byte-order mark is skipped); a UTF-16 or UTF-32 byte-order
mark is honoured (the file is decoded as it says). Lines end with LF or CRLF; a bare CR
is data (and an invalid character in an id).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tru.errors import DataError
from tru.requests.schema import FIELDS, MAX_LINE_BYTES

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
_META = ("source", "line", "pre", "absent")  # per-row bookkeeping next to FIELDS
_HEAD_BYTES = 4096  # what the encoding sniffer looks at
# byte-order marks, longest first (a UTF-32-LE mark starts like a UTF-16-LE one)
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


class UnreadableFile(DataError):
    """A request file that cannot be read as a whole, or whose rows cannot be told apart.
    `path` is the file, `why` the reason in one line; str() is `"<path>: <why>"`."""

    def __init__(self, path: str | Path, why: str):
        self.path = Path(path)
        self.why = one_line(why)
        super().__init__(f"{self.path}: {self.why}")

    def __reduce__(self):  # picklable (a Prefect task may ship it to another process)
        return (type(self), (self.path, self.why))


def one_line(text: object, limit: int = 300) -> str:
    """`text` as one line of at most `limit` characters (line breaks become spaces)."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


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


# ---------------------------------------------------------------------- text files


def _sniff(path: Path) -> tuple[str, int]:
    """(encoding, byte-order mark length) of a text file, from its first bytes: a BOM says
    UTF-8, UTF-16 or UTF-32; otherwise UTF-8, unless NUL bytes say UTF-16/32 without a BOM
    (UnreadableFile: it would be read as garbage, lines cut in the middle of characters)."""
    with open(path, "rb") as f:
        head = f.read(_HEAD_BYTES)
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding, len(bom)
    if head.count(0) * 8 > len(head):
        raise UnreadableFile(
            path, "NUL bytes: looks like UTF-16 or UTF-32 text without a byte-order mark; save it as UTF-8"
        )
    return "utf-8", 0


def _physical_lines(path: Path, encoding: str, skip: int) -> Iterator[bytes | None]:
    """The file's lines as UTF-8 bytes, split at LF only (each keeps its line end; the last
    may have none). A line longer than MAX_LINE_BYTES is skipped unread and yields None.
    UTF-16/32 text is decoded (strictly: a bad code unit makes the file UnreadableFile)."""
    with open(path, "rb") as fb:
        fb.seek(skip)
        if encoding == "utf-8":
            while True:
                raw = fb.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    return
                if len(raw) > MAX_LINE_BYTES:
                    while raw and not raw.endswith(b"\n"):  # skip the rest of the line, unread
                        raw = fb.readline(MAX_LINE_BYTES)
                    yield None
                else:
                    yield raw
        text = io.TextIOWrapper(fb, encoding=encoding, errors="strict", newline="\n")
        try:
            while True:
                line = text.readline(MAX_LINE_BYTES + 1)
                if not line:
                    return
                if len(line) > MAX_LINE_BYTES:
                    while line and not line.endswith("\n"):
                        line = text.readline(MAX_LINE_BYTES)
                    yield None
                else:
                    yield line.encode("utf-8")
        except UnicodeError as err:
            why = getattr(err, "reason", err.__class__.__name__)
            raise UnreadableFile(path, f"not valid {encoding.upper()} despite its byte-order mark ({why})") from None


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
    for raw in _physical_lines(path, *_sniff(path)):
        lineno += 1
        if raw is None:
            rows.append(_bad_row(source, lineno, f"line {lineno}: longer than {MAX_LINE_BYTES >> 20} MiB"))
        elif not raw.strip():
            continue  # blank lines are not rows
        else:
            rows.append(_parse_json_line(path, raw, source, lineno))
        if len(rows) >= chunk_rows:
            yield _frame(rows)
            rows = []
    if rows:
        yield _frame(rows)


_BARE_CR = re.compile(r"\r(?!\n)")


def _is_object(text: str) -> bool:
    try:
        return isinstance(_DECODER.decode(text), dict)
    except (ValueError, RecursionError):
        return False


def _several_objects(text: str) -> bool:
    """Whether a line that is not one JSON value holds several requests: a JSON object followed
    by another one (`{...} {...}`), or pieces split by a bare CR of which one is an object (a
    file with CR line endings). Such a line cannot get one status per request."""
    start = len(text) - len(text.lstrip(" \t\r\n"))
    try:
        obj, end = _DECODER.raw_decode(text, start)
    except (ValueError, RecursionError):
        obj, end = None, 0
    if isinstance(obj, dict) and text[end:].lstrip(" \t\r\n").startswith("{"):
        return True
    pieces = [p for p in _BARE_CR.split(text) if p.strip()]
    return len(pieces) > 1 and any(_is_object(p) for p in pieces)


def _parse_json_line(path: Path, raw: bytes, source: str, lineno: int) -> tuple:
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
        if _several_objects(text):
            raise UnreadableFile(
                path, f"line {lineno} holds several JSON objects (one request per line, lines end with LF or CRLF)"
            ) from None
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


_CR = "\ud800"  # stands for a bare CR while csv parses (decoding never yields a lone high surrogate)
_LONG = "\ud801"  # stands for a line longer than MAX_LINE_BYTES (skipped unread)


class _CsvLines:
    """Feeds a CSV file's physical lines to csv.reader, one at a time, and watches which
    lines each record takes: `start`/`end` (1-based) of the last record, `eof` once the
    file ended inside a record (an unterminated quote), `rowlike` the first line inside a
    multi-line record that has as many delimiters as a whole row."""

    def __init__(self, path: Path):
        self.path = path
        self.lines = _physical_lines(path, *_sniff(path))
        self.n = 0  # physical lines handed out so far
        self.start = 1
        self.end = 0
        self.eof = False
        self.width = 0  # fields in the header, once known
        self.rowlike = 0
        self.text = ""  # the last line handed out

    def __iter__(self) -> Iterator[str]:
        for raw in self.lines:
            self.n += 1
            if raw is None:
                text = _LONG + "\n"
            else:
                text = raw.decode("utf-8", errors="surrogateescape")
                if "\r" in text:  # CRLF (or a CR ending the file) ends the line; any other CR is data
                    body, end = (text[:-2], "\r\n") if text.endswith("\r\n") else (text.removesuffix("\r"), "")
                    text = body.replace("\r", _CR) + end
            self.text = text
            if self.n > self.start and not self.rowlike and self.width > 1 and text.count(",") >= self.width - 1:
                self.rowlike = self.n
            yield text
        self.eof = True

    def next_record(self, reader: Iterator[list[str]]) -> list[str] | None:
        """The next record (None at the end of the file); sets start/end."""
        self.start, self.rowlike = self.n + 1, 0
        try:
            rec = next(reader)
        except StopIteration:
            return None
        finally:
            self.end = self.n
        if self.eof:
            raise UnreadableFile(self.path, f"line {self.start}: a quoted field is never closed (unterminated quote)")
        return rec


def _restore(rec: list[str]) -> list[str]:
    return [v.replace(_CR, "\r") if _CR in v else v for v in rec]


def _read_csv(path: Path, source: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    old_limit = csv.field_size_limit(MAX_LINE_BYTES)
    try:
        yield from _csv_frames(path, source, chunk_rows)
    finally:
        csv.field_size_limit(old_limit)


def _csv_frames(path: Path, source: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """CSV rows: one record per physical line; a quoted field may span lines (RFC 4180) as
    long as its record has the header's width and none of the lines it swallows looks like a
    row (else the file is refused: an unbalanced quote would merge requests)."""
    lines = _CsvLines(path)
    reader = csv.reader(lines)
    header = None
    try:
        while header is None or not any(h.strip() for h in header):  # leading blank lines
            header = lines.next_record(reader)
            if header is None:
                return  # empty file: zero rows
    except csv.Error as err:
        raise UnreadableFile(path, f"the CSV header cannot be parsed ({err})") from None
    if lines.end > lines.start or any(_LONG in h or _CR in h for h in header):
        raise UnreadableFile(path, "the CSV header spans lines or holds a bare CR (lines must end with LF or CRLF)")
    header = [h.strip() for h in header]
    try:
        "".join(header).encode("utf-8")
    except UnicodeEncodeError:
        raise UnreadableFile(path, "the CSV header is not valid UTF-8") from None
    dup = sorted({h for h in header if h in FIELDS and header.count(h) > 1})
    if dup:
        raise UnreadableFile(path, f"the CSV header names column {dup[0]} more than once")
    pos = {f: header.index(f) for f in FIELDS if f in header}
    absent = ",".join(f for f in FIELDS if f not in pos)
    width = lines.width = len(header)
    rows: list[tuple] = []
    while True:
        try:
            rec = lines.next_record(reader)
        except csv.Error as err:
            if lines.end > lines.start:  # inside a multi-line record: cannot tell where rows end
                raise UnreadableFile(
                    path, f"line {lines.start}: not valid CSV ({err}) in a field spanning lines"
                ) from None
            if lines.end < lines.start:
                raise UnreadableFile(path, f"CSV parsing stalled at line {lines.start} ({err})") from None
            rows.append(_bad_row(source, lines.end, f"line {lines.end}: not valid CSV ({err})"))
            continue
        if rec is None:
            break
        first, line = lines.start, lines.end
        if line > first:
            if lines.rowlike or len(rec) != width or any(_LONG in v for v in rec):
                where = f"line {lines.rowlike}, which looks like a row" if lines.rowlike else f"line {line}"
                raise UnreadableFile(
                    path,
                    f"line {first}: a quoted field runs on to {where} (an unbalanced quote?); "
                    "its requests cannot be told apart",
                )
        elif rec == [_LONG]:
            rows.append(_bad_row(source, line, f"line {line}: longer than {MAX_LINE_BYTES >> 20} MiB"))
            continue
        if line == first and not lines.text.strip():
            continue  # a blank line (a line `""` is a row: one empty field)
        if len(rec) != width and any(_CR in v for v in rec):
            raise UnreadableFile(
                path,
                f"line {line}: {len(rec)} fields, the header has {width}, and a bare CR among them "
                "(CR line endings? lines must end with LF or CRLF)",
            )
        rec = _restore(rec)
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
        dup = [f for f in FIELDS if names.count(f) > 1]
        if dup:
            raise UnreadableFile(path, f"column {dup[0]} appears more than once")
        cols = [f for f in FIELDS if f in names]
        absent = ",".join(f for f in FIELDS if f not in cols)
        row = 0
        if not cols and names:  # count the rows by reading a column, not by trusting the metadata
            batches = pf.iter_batches(batch_size=chunk_rows, columns=[names[0]])
        elif not cols:
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
    except (UnreadableFile, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - whatever a malformed file makes pyarrow or pandas raise
        raise UnreadableFile(path, f"not a readable Parquet file ({_os_why(err)})") from None


# ---------------------------------------------------------------------- any format


def reader_for(path: Path) -> Callable[[Path, str, int], Iterator[pd.DataFrame]]:
    """The reader of `path`'s format, from its extension (FORMATS): a function (path, source
    name, chunk_rows) -> frames. Raises UnreadableFile (a DataError) for an unsupported extension."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UnreadableFile(
            path, f"unsupported file type {path.suffix or '(no extension)'!r}; use .jsonl, .ndjson, .csv or .parquet"
        )
    return {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}[fmt]


def check_file(path: Path) -> None:
    """Cheap checks of a request file before it is read (its type, that it opens, its encoding,
    Parquet metadata and column names). Raises UnreadableFile; returns None when it looks fine
    (reading it may still find it unreadable)."""
    fmt = FORMATS.get(path.suffix.lower())
    reader_for(path)
    try:
        with open(path, "rb"):
            pass
        if fmt != "parquet":
            _sniff(path)
            return
    except OSError as err:
        raise UnreadableFile(path, f"cannot be read ({_os_why(err)})") from None
    try:
        names = pq.ParquetFile(path).schema_arrow.names
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever a malformed file makes pyarrow raise
        raise UnreadableFile(path, f"not a readable Parquet file ({_os_why(err)})") from None
    dup = [f for f in FIELDS if names.count(f) > 1]
    if dup:
        raise UnreadableFile(path, f"column {dup[0]} appears more than once")


def _os_why(err: BaseException) -> str:
    """An exception in a few words: its strerror, else its first line, else its class."""
    text = getattr(err, "strerror", None) or (str(err).strip().splitlines() or [""])[0]
    return one_line(text, 200) if text else err.__class__.__name__


def read_chunks(paths: Sequence[Path], chunk_rows: int, counts: dict[str, int]) -> Iterator[pd.DataFrame]:
    """Frames of about `chunk_rows` rows across all `paths`, in order (small files share a
    chunk). Fills `counts` with the rows read per file name. A file that cannot be read
    raises UnreadableFile (its `path` says which)."""
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
            raise UnreadableFile(path, f"cannot be read ({_os_why(err)})") from None
    if buf:
        yield pd.concat(buf, ignore_index=True)
