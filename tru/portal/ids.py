"""The request ids of an uploaded file: a data-protection officer answering several people at
once uploads the list they keep, or the request file itself.

Three shapes are read, told apart by the first line that is not blank: a JSON object (JSON
Lines, the inbox's request format: each line's `request_id`), a CSV header with a
`request_id` column (the inbox's CSV format), else one id per line. Lines starting with `#`
are comments in a plain list. Ids are kept in their order, each once.

Bounded: at most MAX_BYTES are read and MAX_IDS ids looked up, since each lookup reads the
ledger; a longer file is refused with its size, not cut silently.
"""

from __future__ import annotations

import csv
import io
import json

from tru.errors import DataError

MAX_BYTES = 1 << 20
MAX_IDS = 500


def _jsonl(lines: list[str]) -> list[str]:
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise DataError(f"line {number}: not a JSON object (the file's first line is one)") from None
        if not isinstance(row, dict) or not isinstance(row.get("request_id"), str):
            raise DataError(f"line {number}: no request_id")
        out.append(row["request_id"])
    return out


def _csv(text: str) -> list[str]:
    try:
        return [row["request_id"] for row in csv.DictReader(io.StringIO(text)) if row.get("request_id")]
    except csv.Error as err:
        raise DataError(f"not a readable CSV file ({err})") from None


def request_ids(data: bytes) -> list[str]:
    """The request ids in `data` (see the module's docstring), each once, in file order.
    DataError for a file too large, not UTF-8, without ids or with more than MAX_IDS."""
    if len(data) > MAX_BYTES:
        raise DataError(f"the file is larger than {MAX_BYTES // 1024} KiB: split it")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError("the file is not UTF-8 text (a list of request ids, one a line)") from None
    lines = text.splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    if first.startswith("{"):
        found = _jsonl(lines)
    elif "request_id" in next(csv.reader([first]), []):
        found = _csv(text)
    else:
        found = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    ids = list(dict.fromkeys(found))
    if not ids:
        raise DataError("the file holds no request id (one a line, or a request file with a request_id column)")
    if len(ids) > MAX_IDS:
        raise DataError(f"the file holds {len(ids)} request ids, more than {MAX_IDS} at once: split it")
    return ids
