"""Declared backdoors: fake accounts an operator found (a poisoning or bandwagon attack: fake users
who all carry a few popular trigger items and the one target item they push), declared in a file
of the batch.

A declaration is an inbox file whose name starts with `backdoors` followed by `.`, `-` or `_`
(`backdoors.csv`, `backdoors-2026-12-01.jsonl`): a prefix, so the `-2` that the inbox gives a
clashing copy keeps it a declaration. CSV (`.csv`) or JSON Lines (`.jsonl`, `.ndjson`), one row
per line, every value a string:

- `role`: `fake_user`, `trigger` or `target`;
- `id`: the dataset's raw id (a user id for fake_user, an item id for trigger and target),
  resolved against the catalogue as request files' ids are;
- `note`: optional free text; a fake user's note is kept in the ledger (the request's reason),
  nowhere else.

What ingest makes of a declaration (`tru.requests.ingest`):
- every fake_user row becomes a user request of the batch (`request_id` `backdoor-<hash of batch,
  file and line>`, reason "declared fake account"), judged by the rules of any user request;
  its status is in the ledger (`requests.parquet`, kind `user`, source and line of the row);
- trigger and target rows are kept (as item indices) or rejected with a reason, in
  `<ledger_dir>/<batch_id>/backdoors.json`, written (atomically) only after every file of the
  batch was read, and before the ledger's requests file, which is the batch's commit point.

So each declaration row has one outcome in one place: a ledger status (fake_user rows), or a
kept item or a rejection in backdoors.json (trigger and target rows, and rows without a valid
role). A row is rejected for a missing or unknown role, a missing or malformed id, a note that is
not a string, a repeat of an earlier row (same role and id), an item declared both as trigger and
target, an item not in the catalogue or erased by an earlier batch. A file that cannot be read as
a whole (unsupported extension, not decodable, a CSV header without `role` and `id` columns,
several JSON objects on one line) raises UnreadableFile and ingest quarantines it.

backdoors.json holds item indices and counts, never a raw user id (nor any note): the audit reads
it through `declared_backdoors`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tru.errors import DataError
from tru.io import read_json, sha256_file, write_json
from tru.requests.catalog import Catalog
from tru.requests.ledger import batch_metadata, batch_time, check_batch_id, iso_utc, requests_path

# the request readers' decoding (byte-order marks, UTF-16/32, line lengths), shared so that a
# declaration is decoded exactly as a request file is
from tru.requests.readers import UnreadableFile, _physical_lines, _several_objects, _sniff, json_type
from tru.requests.schema import ACCEPTED, ALREADY_ERASED, FIELDS, ID_REGEX, INGEST_STATUSES, MAX_ID_LEN, MAX_LINE_BYTES

ROLES = ("fake_user", "trigger", "target")
ITEM_ROLES = ("trigger", "target")
COLUMNS = ("role", "id", "note")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
BACKDOORS_FILE = "backdoors.json"
REQUEST_ID_PREFIX = "backdoor-"
FAKE_ACCOUNT_REASON = "declared fake account"
_NAME = re.compile(r"backdoors(?:[-_.]|$)", re.IGNORECASE)
_ID = re.compile(ID_REGEX)
_READER_META = ("source", "line", "pre", "absent")  # tru.requests.readers' per-row bookkeeping


def is_declaration(path: str | Path) -> bool:
    """Whether an inbox file is a backdoor declaration (by its name: `backdoors`, then `.`, `-`
    or `_`), not a request file."""
    return bool(_NAME.match(Path(path).name))


def declaration_name(name: str) -> str:
    """The inbox name of a declaration given by hand: its own name when that already says so,
    else `backdoors-<name>`."""
    return name if is_declaration(name) else f"backdoors-{name}"


def backdoors_path(ledger_dir: str | Path, batch_id: str) -> Path:
    """`<ledger_dir>/<batch_id>/backdoors.json`."""
    return Path(ledger_dir) / check_batch_id(batch_id) / BACKDOORS_FILE


def check_declaration(path: Path, open_it: bool = True) -> None:
    """Cheap checks before a declaration is read: its extension and (with `open_it`) that it
    opens and its encoding. Raises UnreadableFile."""
    if path.suffix.lower() not in FORMATS:
        raise UnreadableFile(
            path,
            f"a backdoor declaration of unsupported type {path.suffix or '(no extension)'!r}; use .csv or .jsonl",
        )
    if open_it:
        try:
            _sniff(path)
        except OSError as err:
            raise UnreadableFile(path, f"cannot be read ({err.strerror or err.__class__.__name__})") from None


# ====================================================================== reading


@dataclass
class _Row:
    source: str
    line: int
    role: object = None
    id: object = None
    note: object = None
    pre: str | None = None  # why the line could not be read as a row


def _lines(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """(line number, text without its line end, or None and why it cannot be read); blank
    lines are skipped."""
    lineno = 0
    for raw in _physical_lines(path, *_sniff(path)):
        lineno += 1
        if raw is None:
            yield lineno, None, f"longer than {MAX_LINE_BYTES >> 20} MiB"
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            yield lineno, None, f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at byte {err.start + 1})"
            continue
        text = text.removesuffix("\n").removesuffix("\r")
        if text.strip():
            yield lineno, text, None


def _read_csv(path: Path) -> Iterator[_Row]:
    """One row per line (a quoted field never spans lines: a note with a line break is rejected,
    it cannot swallow the rows after it)."""
    header: list[str] | None = None
    pos: dict[str, int] = {}
    for lineno, text, why in _lines(path):
        if header is None:
            if text is None or "\r" in text:
                raise UnreadableFile(path, f"line {lineno}: the declaration's CSV header cannot be read")
            try:
                header = [h.strip() for h in next(csv.reader([text], strict=True))]
            except csv.Error as err:
                raise UnreadableFile(path, f"the declaration's CSV header cannot be parsed ({err})") from None
            for col in COLUMNS:
                if header.count(col) > 1:
                    raise UnreadableFile(path, f"the declaration's CSV header names column {col} more than once")
            missing = [c for c in ("role", "id") if c not in header]
            if missing:
                raise UnreadableFile(
                    path, f"the declaration's CSV header has no column {', '.join(missing)} (columns: role, id, note)"
                )
            pos = {c: header.index(c) for c in COLUMNS if c in header}
            continue
        if text is None:
            yield _Row(path.name, lineno, pre=why)
            continue
        try:
            rec = next(csv.reader([text], strict=True))
        except csv.Error as err:
            yield _Row(path.name, lineno, pre=f"not valid CSV ({err}; a field may not span lines)")
            continue
        if len(rec) != len(header):
            yield _Row(path.name, lineno, pre=f"has {len(rec)} fields, the header has {len(header)}")
            continue
        yield _Row(path.name, lineno, *(rec[pos[c]] if c in pos else None for c in COLUMNS))


def _read_jsonl(path: Path) -> Iterator[_Row]:
    for lineno, text, why in _lines(path):
        if text is None:
            yield _Row(path.name, lineno, pre=why)
            continue
        try:
            obj = json.loads(text, object_pairs_hook=_no_repeated_column)
        except _RepeatedColumn as err:
            yield _Row(path.name, lineno, pre=f"key {err.args[0]} appears more than once")
            continue
        except (json.JSONDecodeError, RecursionError) as err:
            if _several_objects(text):
                raise UnreadableFile(path, f"line {lineno} holds several JSON objects (one row per line)") from None
            msg = err.msg if isinstance(err, json.JSONDecodeError) else "nested too deeply"
            yield _Row(path.name, lineno, pre=f"not valid JSON ({msg})")
            continue
        if not isinstance(obj, dict):
            yield _Row(path.name, lineno, pre=f"not a JSON object (got {json_type(obj)})")
            continue
        yield _Row(path.name, lineno, obj.get("role"), obj.get("id"), obj.get("note"))


class _RepeatedColumn(ValueError):
    pass


def _no_repeated_column(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    for col in COLUMNS:
        if keys.count(col) > 1:
            raise _RepeatedColumn(col)
    return dict(pairs)


def _text(value: object, name: str) -> tuple[str | None, str | None]:
    """(the value as a string, None for an empty one; or None and why it is not a string)."""
    if value is None or value == "":
        return None, None
    if type(value) is not str:
        return None, f"{name} must be a string, not {json_type(value)}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None, f"{name} holds an invalid character (a lone surrogate)"
    return value, None


# ====================================================================== judging


@dataclass
class Declarations:
    """The declaration files of one batch, read and judged: the fake_user rows (to be ingested
    as user requests), the kept trigger and target items, and the rejected rows."""

    files: list[dict] = field(default_factory=list)  # name, sha256, rows (every row of the file)
    fake_users: list[dict] = field(default_factory=list)  # source, line, id, note, pre
    items: dict[str, set[int]] = field(default_factory=lambda: {r: set() for r in ITEM_ROLES})
    rejected: list[dict] = field(default_factory=list)  # file, line, role, reason

    @classmethod
    def read(
        cls, paths: Sequence[Path], catalog: Catalog, erased_items: Mapping[str, str] | None = None
    ) -> Declarations:
        """Read and judge `paths` (in order; ids repeated across them count as repeats).
        `erased_items`: raw item id -> the batch that erased it. Raises UnreadableFile."""
        erased_items = erased_items or {}
        out = cls()
        seen: dict[tuple[str, str], tuple[str, int]] = {}  # (user|item, id) -> first (file, line)
        roles: dict[str, str] = {}  # item id -> its role
        for path in paths:
            check_declaration(path)
            read = _read_csv if FORMATS[path.suffix.lower()] == "csv" else _read_jsonl
            try:
                rows = list(read(path))
                digest = sha256_file(path)
            except OSError as err:
                raise UnreadableFile(path, f"cannot be read ({err.strerror or err.__class__.__name__})") from None
            out.files.append({"name": path.name, "sha256": digest, "rows": len(rows)})
            named = [r.id for r in rows if r.role in ITEM_ROLES and isinstance(r.id, str)]
            index = dict(zip(named, catalog.item_index(named).tolist()))
            for r in rows:
                role, why = _text(r.role, "role")
                if r.pre is None and role is None and why is None:
                    why = "role is missing"
                elif role is not None and role not in ROLES:
                    # never echoed: with swapped columns it would be a user id, and backdoors.json holds none
                    why = f"role is not one of {', '.join(ROLES)}"
                if r.pre is not None or why is not None or role is None:
                    out.rejected.append(_rejection(r, None, r.pre or why or "role is missing"))
                    continue
                raw, why = _valid_id(r)
                if raw is not None:
                    why = out._repeat(role, raw, r, seen, roles)
                if role == "fake_user":  # the ledger judges it, or records why it was refused here
                    note = r.note if isinstance(r.note, str) else None
                    out.fake_users.append({"source": r.source, "line": r.line, "id": raw, "note": note, "pre": why})
                    continue
                if raw is not None and why is None:
                    if index[raw] < 0:
                        why = "unknown item id (not in the dataset)"
                    elif raw in erased_items:
                        why = f"item already erased in batch {erased_items[raw]}: it is no longer ranked"
                    else:
                        out.items[role].add(index[raw])
                        continue
                out.rejected.append(_rejection(r, role, why or "id is missing"))
        return out

    @staticmethod
    def _repeat(
        role: str, raw: str, r: _Row, seen: dict[tuple[str, str], tuple[str, int]], roles: dict[str, str]
    ) -> str | None:
        """Why a row repeats an earlier one (same role and id; an item in a second role), or
        None (and the row is remembered)."""
        key = ("user" if role == "fake_user" else "item", raw)
        first = seen.get(key)
        if first is None:
            seen[key] = (r.source, r.line)
            if role != "fake_user":
                roles[raw] = role
            return None
        if role == "fake_user":
            return f"repeats the fake_user of {_where(first, r.source)}; a fake account is declared once"
        if roles[raw] == role:
            return f"repeats the {role} of {_where(first, r.source)}"
        return (
            f"the item is already declared as a {roles[raw]} on {_where(first, r.source)}; "
            "an item is a trigger or a target, not both"
        )

    def rows_per_file(self) -> dict[str, int]:
        """Ledger rows (fake_user rows) per declaration file."""
        counts = Counter(f["source"] for f in self.fake_users)
        return {f["name"]: counts.get(f["name"], 0) for f in self.files}

    def frames(self, batch_id: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """The fake_user rows as user requests, in the layout of tru.requests.readers' frames
        (FIELDS plus source, line, pre, absent): request ids derived from the batch, file and
        line; received at the batch's time; a row refused here carries its reason in `pre`."""
        received = iso_utc(batch_time(batch_id))
        rows = []
        for f in self.fake_users:
            note = f["note"]
            reason = FAKE_ACCOUNT_REASON if not note else f"{FAKE_ACCOUNT_REASON}; note: {note}"
            values = {
                "request_id": request_id(batch_id, f["source"], f["line"]),
                "kind": "user",
                "user_id": f["id"],
                "item_id": None,
                "received_at": received,
                "reason": reason,
            }
            rows.append([values[c] for c in FIELDS] + [f["source"], f["line"], f["pre"], ""])
        for start in range(0, len(rows), chunk_rows):
            yield pd.DataFrame(
                rows[start : start + chunk_rows], columns=list(FIELDS) + list(_READER_META), dtype=object
            )

    def record(self, batch_id: str, fake_user_statuses: Mapping[str, int]) -> dict:
        """What backdoors.json holds: item indices, counts and the rejected rows (file, line,
        role, reason); never a raw id or a note. `fake_user_statuses`: status -> ledger rows
        of the fake_user rows."""
        statuses = {s: int(fake_user_statuses.get(s, 0)) for s in INGEST_STATUSES}
        if sum(statuses.values()) != len(self.fake_users):
            raise RuntimeError(
                f"backdoors: {len(self.fake_users)} fake_user rows read, {sum(statuses.values())} statuses"
            )
        by_role = Counter(r["role"] for r in self.rejected)
        counts: dict[str, object] = {"rows": sum(f["rows"] for f in self.files), "fake_user": statuses}
        for role in ITEM_ROLES:
            counts[role] = {"kept": len(self.items[role]), "rejected": by_role.get(role, 0)}
        counts["invalid"] = by_role.get(None, 0)
        outcomes = len(self.fake_users) + sum(len(v) for v in self.items.values()) + len(self.rejected)
        if outcomes != counts["rows"]:
            raise RuntimeError(f"backdoors: {counts['rows']} declaration rows read, {outcomes} outcomes")
        return {
            "batch_id": batch_id,
            "files": [{"name": f["name"], "sha256": f["sha256"], "rows": f["rows"]} for f in self.files],
            "targets": sorted(self.items["target"]),
            "triggers": sorted(self.items["trigger"]),
            "fake_users": statuses[ACCEPTED] + statuses[ALREADY_ERASED],
            "counts": counts,
            "rejected": self.rejected,
        }


def _valid_id(r: _Row) -> tuple[str | None, str | None]:
    """(the row's id, None) when its id and note are well-formed, else (None, why not)."""
    value, why = _text(r.id, "id")
    if why is None and value is None:
        why = "id is missing"
    elif value is not None and not _ID.match(value):
        too_long = len(value) > MAX_ID_LEN
        why = (
            f"id is longer than {MAX_ID_LEN} characters"
            if too_long
            else ("id must be printable characters without leading or trailing spaces")
        )
    if why is None:
        why = _text(r.note, "note")[1]
    return (value, None) if why is None else (None, why)


def _where(first: tuple[str, int], source: str) -> str:
    return f"line {first[1]}" if first[0] == source else f"line {first[1]} of {first[0]}"


def _rejection(r: _Row, role: str | None, why: str) -> dict:
    return {"file": r.source, "line": r.line, "role": role, "reason": why}


def request_id(batch_id: str, source: str, line: int) -> str:
    """The request id of a fake_user row: `backdoor-` and 32 hex digits of SHA-256 over the
    batch id, file name and line (no raw id goes into it)."""
    digest = hashlib.sha256(f"{batch_id}\x1f{source}\x1f{line}".encode()).hexdigest()
    return f"{REQUEST_ID_PREFIX}{digest[:32]}"


# ====================================================================== the record


def write_backdoors(ledger_dir: str | Path, batch_id: str, record: dict) -> Path:
    """Write the batch's backdoors.json (atomically). Ingest calls it after every file was read
    and before the ledger's requests file is moved into place."""
    path = backdoors_path(ledger_dir, batch_id)
    write_json(path, record)
    return path


def declared_backdoors(ledger_dir: str | Path, batch_id: str) -> dict | None:
    """The backdoors declared with batch `batch_id`: {"targets": [item index, ...], "triggers":
    [item index, ...], "fake_users": how many declared fake accounts are erased (accepted, or
    already erased by an earlier batch)}; None when the batch came without a declaration.

    DataError when the batch is not in the ledger, or when its ledger names declaration files
    that backdoors.json does not match (a missing or stale file)."""
    if not requests_path(ledger_dir, batch_id).is_file():
        raise DataError(f"{requests_path(ledger_dir, batch_id)}: batch {batch_id} is not in the ledger")
    declared = sorted(
        (i["name"], i["sha256"]) for i in batch_metadata(ledger_dir, batch_id).get("inputs", []) if i.get("backdoors")
    )
    if not declared:
        return None
    path = backdoors_path(ledger_dir, batch_id)
    if not path.is_file():
        raise DataError(f"{path}: not found, but batch {batch_id} was ingested with a backdoor declaration")
    record = read_json(path)
    if record.get("batch_id") != batch_id or sorted((f["name"], f["sha256"]) for f in record["files"]) != declared:
        raise DataError(f"{path}: does not match the declaration files batch {batch_id} recorded in its ledger")
    return {
        "targets": [int(i) for i in record["targets"]],
        "triggers": [int(i) for i in record["triggers"]],
        "fake_users": int(record["fake_users"]),
    }
