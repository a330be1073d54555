"""Seeded fuzzing of ingest: hundreds of malformed JSONL, CSV and Parquet files (truncations,
random bytes, bad quotes, CR/LF mixes, byte-order marks, duplicate columns, wrong types, huge
fields, empty files). Whatever a file holds, ingest raises nothing; every file is either
ingested (rows read = statuses written) or quarantined with a one-line reason; the inbox is
empty afterwards. Plain `random` with a fixed seed: the same files on every run."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tru.requests.catalog import Catalog
from tru.requests.inbox import REASON_SUFFIX
from tru.requests.ingest import ingest_batch
from tru.requests.ledger import new_batch_id, read_ledger
from tru.requests.readers import UnreadableFile, read_chunks
from tru.requests.schema import FIELDS, MAX_LINE_BYTES

SEED = 20261128
N_FILES = 330
PER_BATCH = 66  # files per ingest run: 5 runs
KEY = b"\x0f" * 32
USERS = ["alice", "bob", "carol", "dave", "erin"]
ITEMS = ["sku-1", "sku-2", "sku-3", "sku-4"]
PAIRS = np.array([[0, 0], [0, 1], [1, 1], [2, 3], [3, 2]])
T0 = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)
INGEST, QUARANTINE = "ingest", "quarantine"
EITHER = frozenset({INGEST, QUARANTINE})
ONLY_INGEST, ONLY_QUARANTINE = frozenset({INGEST}), frozenset({QUARANTINE})
NON_UTF8_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


@dataclass
class Case:
    name: str
    data: bytes
    outcomes: frozenset[str]
    expect: int | None  # rows when ingested, if known
    oracle: bool = False  # rows when ingested = non-blank LF lines (UTF-8 JSON Lines)


# ---------------------------------------------------------------------- request rows


def request(rng: random.Random, i: int) -> dict:
    kind = rng.choice(["user", "item", "interaction", "interaction", "account"])
    row: dict = {"request_id": f"f{i}-{rng.randrange(10**6)}", "kind": kind}
    if kind in ("user", "interaction", "account"):
        row["user_id"] = rng.choice(USERS + ["zoe"])
    if kind in ("item", "interaction"):
        row["item_id"] = rng.choice(ITEMS + ["sku-99"])
    row["received_at"] = rng.choice(["2026-11-28T10:00:00Z", "2026-11-28", "2026-11-28T12:00:00+02:00", "soon"])
    if rng.random() < 0.5:
        row["reason"] = rng.choice(["", "please", '<b>x</b>, "quoted"', "من فضلك 👋", "a;b;c"])
    return row


WEIRD = [
    "9999-12-31T23:59:59Z",
    "0001-01-01",
    "2026-13-45",
    "1e400",
    "\u0000",
    "２０２６-11-28",
    "NaN",
    "-1",
    " alice",
    "alice\u202e",
    "\ud83d",
    "x" * 200,
    "../../etc/passwd",
    "=cmd|' /C calc'!A0",
]


def weird(rng: random.Random, rows: list[dict]) -> list[dict]:
    """Odd but well-formed values in random fields: far-off or impossible times, control and
    bidi characters, lone surrogates, formula and path injections."""
    return [dict(r, **{rng.choice(list(FIELDS)): rng.choice(WEIRD)}) for r in rows]


def requests(rng: random.Random, lo: int = 1, hi: int = 12) -> list[dict]:
    return [request(rng, i) for i in range(rng.randint(lo, hi))]


def flip(rng: random.Random, data: bytes, k: int) -> bytes:
    b = bytearray(data)
    for _ in range(k):
        if b:
            b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)


def noise(rng: random.Random, n: int) -> bytes:
    return bytes(rng.randrange(256) for _ in range(n))


# ---------------------------------------------------------------------- JSON Lines


def jsonl_text(rows: list[dict], sep: str = "\n") -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + sep for r in rows)


def jsonl_cases(rng: random.Random) -> dict[str, Callable[[], tuple[bytes, frozenset[str], int | None, bool]]]:
    rows = requests(rng)
    n = len(rows)
    text = jsonl_text(rows)

    def cr_mix():
        parts = text.split("\n")
        return "".join(p + rng.choice(["\n", "\r\n", "\r"]) for p in parts[:-1]).encode(), EITHER, None, True

    def huge():
        r = dict(rows[0])
        r[rng.choice(["reason", "user_id", "request_id"])] = "x" * rng.choice([3000, 50_000, MAX_LINE_BYTES + 10])
        return jsonl_text([r] + rows[1:]).encode(), ONLY_INGEST, n, True

    def bad_quotes():
        b = bytearray(text.encode())
        for _ in range(rng.randint(1, 4)):
            quotes = [i for i, c in enumerate(b) if c == ord('"')]
            if quotes and rng.random() < 0.5:
                del b[rng.choice(quotes)]
            else:
                b.insert(rng.randrange(len(b) + 1), ord('"'))
        return bytes(b), EITHER, None, True

    def wrong_types():
        out = []
        for r in rows:
            r = dict(r)
            f = rng.choice(list(FIELDS))
            r[f] = rng.choice([42, 4.2, None, True, ["alice"], {"id": "alice"}, ""])
            out.append(r)
        return jsonl_text(out).encode(), ONLY_INGEST, n, True

    def dup_keys():
        lines = [json.dumps(r)[:-1] + ', "kind": "user"}' for r in rows]
        return ("\n".join(lines) + "\n").encode(), ONLY_INGEST, n, True

    def nested():
        deep = "[" * 100_000 + "]" * 100_000
        return (text + deep + "\n" + '"just a string"\n').encode(), ONLY_INGEST, n + 2, True

    return {
        "valid": lambda: (text.encode(), ONLY_INGEST, n, True),
        "crlf": lambda: (jsonl_text(rows, "\r\n").encode(), ONLY_INGEST, n, True),
        "cr_mix": cr_mix,
        "cr_only": lambda: (jsonl_text(rows, "\r").encode(), ONLY_QUARANTINE if n > 1 else ONLY_INGEST, None, True),
        "utf8_bom": lambda: (text.encode("utf-8-sig"), ONLY_INGEST, n, True),
        "utf16_bom": lambda: (text.encode("utf-16"), ONLY_INGEST, n, False),
        "utf32_bom": lambda: (text.encode("utf-32"), ONLY_INGEST, n, False),
        "utf16_no_bom": lambda: (text.encode(rng.choice(["utf-16-le", "utf-16-be"])), ONLY_QUARANTINE, None, False),
        "truncated": lambda: (text.encode()[: rng.randrange(len(text.encode()))], ONLY_INGEST, None, True),
        "random_bytes": lambda: (noise(rng, rng.randrange(1, 3000)), EITHER, None, True),
        "flipped_bytes": lambda: (flip(rng, text.encode(), rng.randint(1, 20)), EITHER, None, True),
        "bad_quotes": bad_quotes,
        "wrong_types": wrong_types,
        "dup_keys": dup_keys,
        "huge_field": huge,
        "empty": lambda: (rng.choice([b"", b"\n", b"\n \n\t\n", b"\xef\xbb\xbf"]), EITHER, 0, True),
        "nested": nested,
        "two_objects": lambda: (text.encode() + b'{"a": 1} {"b": 2}\n', ONLY_QUARANTINE, None, False),
        "invalid_utf8": lambda: (text.encode().replace(b"a", b"\xff", 2), ONLY_INGEST, n, True),
        "nul_bytes": lambda: (text.encode().replace(b"e", b"\x00", 1), ONLY_INGEST, n, True),
        "weird_values": lambda: (jsonl_text(weird(rng, rows)).encode("utf-8", "surrogatepass"), ONLY_INGEST, n, True),
        "json_specials": lambda: (
            text.encode()
            + b'{"request_id": NaN, "kind": Infinity, "user_id": 1e400, "received_at": 12345678901234567890123}\n',
            ONLY_INGEST,
            n + 1,
            True,
        ),
    }


# ---------------------------------------------------------------------- CSV


def csv_text(rows: list[dict], cols: list[str] | None = None, eol: str = "\n") -> str:
    cols = cols or list(FIELDS)
    out = io.StringIO()
    import csv as _csv

    w = _csv.writer(out, lineterminator=eol)
    w.writerow(cols)
    for r in rows:
        w.writerow([r.get(c, "") if isinstance(r.get(c, ""), str) else str(r.get(c)) for c in cols])
    return out.getvalue()


def csv_cases(rng: random.Random) -> dict[str, Callable[[], tuple[bytes, frozenset[str], int | None, bool]]]:
    rows = requests(rng, lo=2)
    n = len(rows)
    text = csv_text(rows)
    lines = text.splitlines(keepends=True)

    def bare_cr_field():
        out = [dict(r, reason=f"a\r{r.get('reason', '')}b") if rng.random() < 0.6 else r for r in rows]
        body = "".join(
            ",".join(str(r.get(c, "")).replace(",", " ").replace('"', "") for c in FIELDS) + "\n" for r in out
        )
        return (",".join(FIELDS) + "\n" + body).encode(), ONLY_INGEST, n, False

    def cr_mix():
        i = rng.randrange(len(lines) - 1)  # a line that ends with a bare CR, before the last one
        mixed = lines[:i] + [lines[i].rstrip("\n") + "\r"] + lines[i + 1 :]
        return "".join(mixed).encode(), ONLY_QUARANTINE, None, False

    def unterminated():
        i = rng.randrange(1, len(lines))
        return (
            "".join(lines[:i] + ['x,user,alice,,2026-11-28,"open\n'] + lines[i:]).encode(),
            ONLY_QUARANTINE,
            None,
            False,
        )

    def stray_quote():
        i = rng.randrange(1, len(lines) - 1)
        new = lines[:i] + ['x,user,alice,,2026-11-28,"open\n'] + lines[i:]
        new.append('y,user,bob,,2026-11-28,close"\n')
        return "".join(new).encode(), ONLY_QUARANTINE, None, False

    def multiline_ok():
        extra = 'm,user,alice,,2026-11-28,"line one\nline two\r\nline three"\n'
        return (text + extra).encode(), ONLY_INGEST, n + 1, False

    def dup_header():
        col = rng.choice(list(FIELDS))
        return (text.replace("reason", col, 1) if col != "reason" else "kind," + text).encode(), EITHER, None, False

    def missing_cols():
        cols = rng.sample(list(FIELDS), rng.randint(1, len(FIELDS) - 1))
        return csv_text(rows, cols).encode(), ONLY_INGEST, n, False

    def wrong_width():
        body = [ln.rstrip("\n") + rng.choice(["", ",extra", ",a,b"]) + "\n" for ln in lines[1:]]
        body = [ln if rng.random() < 0.7 else ",".join(ln.split(",")[:3]) + "\n" for ln in body]
        return (lines[0] + "".join(body)).encode(), EITHER, None, False

    def random_quotes():
        b = bytearray(text.encode())
        for _ in range(rng.randint(1, 5)):
            b.insert(rng.randrange(len(b) + 1), ord('"'))
        return bytes(b), EITHER, None, False

    def huge():
        r = dict(rows[0], reason="y" * rng.choice([3000, 200_000, MAX_LINE_BYTES + 10]))
        return csv_text([r] + rows[1:]).encode(), ONLY_INGEST, n, False

    def blank_lines():
        body = "".join(ln + ("\n" * rng.randint(0, 2)) for ln in lines[1:])
        return (lines[0] + body).encode(), ONLY_INGEST, n, False

    return {
        "valid": lambda: (text.encode(), ONLY_INGEST, n, False),
        "crlf": lambda: (csv_text(rows, eol="\r\n").encode(), ONLY_INGEST, n, False),
        "bare_cr_field": bare_cr_field,
        "cr_only": lambda: (csv_text(rows, eol="\r").encode(), ONLY_QUARANTINE, None, False),
        "cr_mix": cr_mix,
        "unterminated_quote": unterminated,
        "stray_quote": stray_quote,
        "multiline_ok": multiline_ok,
        "utf8_bom": lambda: (text.encode("utf-8-sig"), ONLY_INGEST, n, False),
        "utf16_bom": lambda: (text.encode("utf-16"), ONLY_INGEST, n, False),
        "utf16_no_bom": lambda: (text.encode("utf-16-le"), ONLY_QUARANTINE, None, False),
        "dup_header": dup_header,
        "missing_cols": missing_cols,
        "wrong_width": wrong_width,
        "truncated": lambda: (text.encode()[: rng.randrange(len(text.encode()))], EITHER, None, False),
        "random_bytes": lambda: (noise(rng, rng.randrange(1, 3000)), EITHER, None, False),
        "flipped_bytes": lambda: (flip(rng, text.encode(), rng.randint(1, 20)), EITHER, None, False),
        "random_quotes": random_quotes,
        "huge_field": huge,
        "empty": lambda: (rng.choice([b"", b"\n\n", lines[0].encode()]), EITHER, 0, False),
        "blank_lines": blank_lines,
        "invalid_utf8": lambda: (text.encode().replace(b"e", b"\xfe", 3), EITHER, None, False),
        "weird_values": lambda: (csv_text(weird(rng, rows)).encode("utf-8", "surrogatepass"), ONLY_INGEST, n, False),
    }


# ---------------------------------------------------------------------- Parquet


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def parquet_cases(rng: random.Random) -> dict[str, Callable[[], tuple[bytes, frozenset[str], int | None, bool]]]:
    rows = requests(rng)
    n = len(rows)
    frame = pd.DataFrame([{f: r.get(f) for f in FIELDS} for r in rows])
    valid = parquet_bytes(pa.Table.from_pandas(frame, preserve_index=False))

    def timestamps():
        f = frame.copy()
        f["received_at"] = pd.to_datetime(["2026-11-27 08:00"] * n, utc=rng.random() < 0.5)
        return parquet_bytes(pa.Table.from_pandas(f, preserve_index=False)), ONLY_INGEST, n, False

    def far_times():
        when = [rng.choice([datetime(1, 1, 1), datetime(9999, 12, 31), None, datetime(2026, 1, 1)]) for _ in rows]
        unit = rng.choice([pa.timestamp("us"), pa.timestamp("ms", tz="UTC"), pa.date32()])
        when = [w.date() if w is not None and unit == pa.date32() else w for w in when]
        t = pa.table(
            {
                **{f: pa.array([r.get(f) for r in rows], pa.string()) for f in FIELDS[:4]},
                "received_at": pa.array(when, unit),
            }
        )
        return parquet_bytes(t), ONLY_INGEST, n, False

    def wrong_types():
        cols = {f: pa.array([r.get(f) for r in rows], pa.string()) for f in FIELDS}
        f = rng.choice(list(FIELDS))
        cols[f] = rng.choice(
            [
                pa.array(list(range(n)), pa.int64()),
                pa.array([[1, 2]] * n, pa.list_(pa.int64())),
                pa.array([{"a": "x"}] * n, pa.struct([("a", pa.string())])),
                pa.array([b"\xff"] * n, pa.binary()),
                pa.array([1.5] * n, pa.float64()),
            ]
        )
        return parquet_bytes(pa.table(cols)), ONLY_INGEST, n, False

    def dictionary():
        t = pa.table({f: pa.array([r.get(f) for r in rows], pa.string()).dictionary_encode() for f in FIELDS})
        return parquet_bytes(t), ONLY_INGEST, n, False

    def dup_columns():
        f = rng.choice(list(FIELDS))
        arrays = [pa.array([r.get(c) for r in rows], pa.string()) for c in FIELDS]
        t = pa.Table.from_arrays(arrays + [arrays[0]], names=list(FIELDS) + [f])
        return parquet_bytes(t), ONLY_QUARANTINE, None, False

    def dup_other_columns():
        arrays = [pa.array([r.get(c) for r in rows], pa.string()) for c in FIELDS]
        t = pa.Table.from_arrays(arrays + [arrays[0], arrays[1]], names=list(FIELDS) + ["note", "note"])
        return parquet_bytes(t), EITHER, n, False

    def huge():
        f = frame.copy()
        f.loc[0, "reason"] = "z" * 300_000
        return parquet_bytes(pa.Table.from_pandas(f, preserve_index=False)), ONLY_INGEST, n, False

    return {
        "valid": lambda: (valid, ONLY_INGEST, n, False),
        "timestamps": timestamps,
        "far_times": far_times,
        "wrong_types": wrong_types,
        "dictionary": dictionary,
        "nulls": lambda: (
            parquet_bytes(pa.table({f: pa.nulls(n, pa.string()) for f in FIELDS})),
            ONLY_INGEST,
            n,
            False,
        ),
        "no_fields": lambda: (parquet_bytes(pa.table({"x": list(range(n))})), ONLY_INGEST, n, False),
        "empty": lambda: (parquet_bytes(pa.Table.from_pandas(frame.iloc[:0], preserve_index=False)), EITHER, 0, False),
        "dup_columns": dup_columns,
        "dup_other_columns": dup_other_columns,
        "truncated": lambda: (valid[: rng.randrange(len(valid) - 8)], ONLY_QUARANTINE, None, False),
        "flipped_bytes": lambda: (flip(rng, valid, rng.randint(1, 10)), EITHER, None, False),
        "random_bytes": lambda: (noise(rng, rng.randrange(0, 3000)), ONLY_QUARANTINE, None, False),
        "huge_field": huge,
    }


# ---------------------------------------------------------------------- the run


def make_cases(rng: random.Random) -> list[Case]:
    makers = {"jsonl": jsonl_cases, "csv": csv_cases, "parquet": parquet_cases}
    out = []
    for i in range(N_FILES):
        fmt = rng.choice(sorted(makers))
        cases = makers[fmt](rng)
        mutation = rng.choice(sorted(cases))
        data, outcomes, expect, oracle = cases[mutation]()
        ext = fmt if rng.random() > 0.01 else "txt"  # now and then an unsupported extension
        if ext == "txt":
            outcomes, expect = ONLY_QUARANTINE, None
        out.append(Case(f"f{i:03d}-{fmt}-{mutation}.{ext}", data, outcomes, expect, oracle))
    return out


def jsonl_rows(data: bytes) -> int | None:
    """Rows of a UTF-8 JSON Lines file: non-blank lines (a line over the limit is a row)."""
    if data.startswith(NON_UTF8_BOMS):
        return None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    pieces = data.split(b"\n")
    if pieces and pieces[-1] == b"":
        pieces.pop()
    return sum(1 for p in pieces if p.strip() or len(p) + 1 > MAX_LINE_BYTES)


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return make_cases(random.Random(SEED))


def test_the_generator_covers_every_format_and_outcome(cases):
    assert len(cases) >= 300
    assert {c.name.rsplit(".", 1)[1] for c in cases} >= {"jsonl", "csv", "parquet"}
    assert sum(c.outcomes == ONLY_QUARANTINE for c in cases) >= 40
    assert len({c.name.split("-", 2)[2] for c in cases}) >= 40  # format-mutation pairs


def test_no_request_is_lost_or_stuck(cases, tmp_path):
    catalog = Catalog(USERS, ITEMS, PAIRS)
    inbox, batches, ledger_dir, quarantine = (tmp_path / n for n in ("inbox", "batches", "ledger", "quarantine"))
    inbox.mkdir()
    outcome: dict[str, str] = {}
    for k in range(0, len(cases), PER_BATCH):
        group = cases[k : k + PER_BATCH]
        for c in group:
            (inbox / c.name).write_bytes(c.data)
        now = T0 + timedelta(days=k // PER_BATCH)
        summary = ingest_batch(
            inbox, batches, ledger_dir, catalog, KEY, now=now, quarantine_dir=quarantine
        )  # never raises
        assert not list(inbox.iterdir()), "the inbox is empty afterwards"
        batch = new_batch_id(now)
        assert summary["batch_id"] == batch
        ledger = read_ledger(ledger_dir)
        ledger = ledger[ledger["batch_id"] == batch]
        assert len(ledger) == summary["rows"] == sum(summary["by_status"].values())
        assert ledger.groupby(["source", "line"]).size().max() == 1  # one status per row
        per_file = ledger.groupby("source").size().to_dict()
        rows = {f["name"]: f["rows"] for f in summary["files"]}
        reasons = {q["name"]: q["reason"] for q in summary["quarantined"]}
        for c in group:
            ingested = c.name in rows
            held = (quarantine / batch / c.name).exists()
            assert ingested != held, c.name  # exactly one of the two
            got = INGEST if ingested else QUARANTINE
            outcome[c.name] = got
            assert got in c.outcomes, (c.name, reasons.get(c.name))
            if ingested:
                assert (batches / batch / "input" / c.name).read_bytes() == c.data
                assert per_file.get(c.name, 0) == rows[c.name], c.name  # rows read = statuses written
                if c.expect is not None:
                    assert rows[c.name] == c.expect, c.name
                if c.oracle and (n := jsonl_rows(c.data)) is not None:
                    assert rows[c.name] == n, c.name
            else:
                assert (quarantine / batch / c.name).read_bytes() == c.data
                text = Path(f"{quarantine / batch / c.name}{REASON_SUFFIX}").read_text()
                assert text.count("\n") == 1 and len(text) > len(c.name) + 3, text  # one line, a reason
                assert reasons[c.name] in text
                if "holds no requests" not in text:  # refused for what it holds: the reader agrees
                    with pytest.raises(UnreadableFile) as err:
                        for _ in read_chunks([quarantine / batch / c.name], 1000, {}):
                            pass
                    assert "\n" not in str(err.value)
    assert sum(v == QUARANTINE for v in outcome.values()) >= 40 and sum(v == INGEST for v in outcome.values()) >= 150
