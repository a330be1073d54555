"""Deletion-request ingest: status accounting, idempotency, erasure state, pseudonyms, ledger."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tru.errors import ConfigError, DataError
from tru.requests.catalog import Catalog
from tru.requests.inbox import pending_files
from tru.requests.ingest import ingest_batch, ingest_files
from tru.requests.ledger import append_status, batch_time, new_batch_id, public_view, read_ledger
from tru.requests.pseudonym import KEY_ENV, load_key, pseudonym, subject

KEY_HEX = "0f" * 32
USERS = ["alice", "bob", "carol", "dave", "erin"]
ITEMS = ["sku-1", "sku-2", "sku-3", "sku-4"]
# (user, item) index pairs that exist in the dataset (all splits)
PAIRS = np.array([[0, 0], [0, 1], [1, 1], [2, 3], [3, 2]])
T1 = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
T3 = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY_HEX)
    return load_key()


@pytest.fixture
def catalog():
    return Catalog(USERS, ITEMS, PAIRS)


@pytest.fixture
def dirs(tmp_path):
    d = {n: tmp_path / n for n in ("inbox", "batches", "ledger")}
    d["inbox"].mkdir()
    return d


def req(rid, kind, user=None, item=None, at="2026-11-28T10:00:00Z", **extra):
    row = {"request_id": rid, "kind": kind, "received_at": at, **extra}
    if user is not None:
        row["user_id"] = user
    if item is not None:
        row["item_id"] = item
    return row


def write_jsonl(path: Path, rows) -> Path:
    with open(path, "wb") as f:
        for r in rows:
            f.write(
                r if isinstance(r, bytes) else (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)).encode()
            )
            f.write(b"\n")
    return path


def by_row(ledger: pd.DataFrame) -> dict[tuple[str, int], dict]:
    return {(r["source"], int(r["line"])): r for r in ledger.to_dict("records")}


def test_status_accounting_on_every_bad_input(dirs, catalog, key):
    write_jsonl(
        dirs["inbox"] / "a.jsonl",
        [
            req("r-ok-user", "user", "alice", reason="<b>delete me</b> من فضلك 👋🏽 \u202eRTL"),  # 1
            '{"request_id": "r-broken", "kind": "user"',  # 2 malformed JSON
            b'{"request_id":"r-bytes","kind":"item","item_id":"sku-\xff1","received_at":"2026-11-28"}',  # 3
            req("r-num", "item", item=7),  # 4 wrong type: number
            req("r-list", "user", ["alice"]),  # 5 wrong type: list
            req("r-kind", "account", "bob"),  # 6 unknown kind
            req("r-long", "user", "x" * 300),  # 7 oversize id
            req("r-reason", "user", "bob", reason="y" * 2001),  # 8 oversize reason
            req("../x", "user", "bob"),  # 9 path-like request id
            req("r-ok-user", "user", "alice"),  # 10 duplicate id inside the file
            req("r-ghost", "user", "zoe"),  # 11 unknown user
            req("r-ghost-item", "item", item="sku-99"),  # 12 unknown item
            req("r-no-pair", "interaction", "bob", "sku-1"),  # 13 interaction that does not exist
            req("r-when", "interaction", "alice", "sku-2", at="next tuesday"),  # 14 bad timestamp
            req("r-both", "item", "alice", "sku-3"),  # 15 user_id given for an item request
            "[1, 2, 3]",  # 16 not an object
            "",  # blank line: not a row
            req("r-pair", "interaction", "carol", "sku-4", at="2026-11-28T12:00:00+02:00"),  # 18
            req("r-same-target", "user", "alice"),  # 19 same target, new id
            req("r-newline", "user", "alice\n"),  # 20 control character in an id
            req("r-missing-user", "interaction", item="sku-1"),  # 21 required id missing
        ],
    )
    (dirs["inbox"] / "b.csv").write_text(
        "request_id,kind,user_id,received_at\nc-user,user,dave,2026-11-28\nc-item,item,,2026-11-28\n"
    )
    (dirs["inbox"] / "c.csv").write_text("request_id,kind,user_id,item_id,received_at,reason\n")  # header only
    (dirs["inbox"] / "d.jsonl").write_bytes(b"")  # empty
    (dirs["inbox"] / "e.csv").write_bytes(b"request_id,kind,user_id,received_at\nc-bad,user,b\xffb,2026-11-28\n")
    pd.DataFrame(
        {
            "request_id": ["p-item", "p-pair"],
            "kind": ["item", "interaction"],
            "user_id": [None, "dave"],
            "item_id": ["sku-2", "sku-3"],
            "received_at": pd.to_datetime(["2026-11-27 08:00", "2026-11-27 09:30"]),
        }
    ).to_parquet(dirs["inbox"] / "f.parquet")
    (dirs["inbox"] / ".hidden.jsonl").write_text("{}\n")
    (dirs["inbox"] / "upload.jsonl.part").write_text("{}\n")

    summary = ingest_batch(dirs["inbox"], dirs["batches"], dirs["ledger"], catalog, key, now=T1)
    assert summary["batch_id"] == "b20261128T230000Z"
    rows_in = 20 + 2 + 0 + 0 + 1 + 2
    assert summary["rows"] == rows_in
    assert {f["name"]: f["rows"] for f in summary["files"]} == {
        "a.jsonl": 20,
        "b.csv": 2,
        "c.csv": 0,
        "d.jsonl": 0,
        "e.csv": 1,
        "f.parquet": 2,
    }
    ledger = read_ledger(dirs["ledger"])
    assert len(ledger) == rows_in == sum(summary["by_status"].values())  # rows in == statuses out
    assert ledger.groupby(["source", "line"]).size().max() == 1

    rows = by_row(ledger)
    expect = {
        ("a.jsonl", 1): ("accepted", None),
        ("a.jsonl", 2): ("rejected", "line 2: not valid JSON"),
        ("a.jsonl", 3): ("rejected", "line 3: not valid UTF-8"),
        ("a.jsonl", 4): ("rejected", "item_id must be a string, not a number"),
        ("a.jsonl", 5): ("rejected", "user_id must be a string, not a list"),
        ("a.jsonl", 6): ("rejected", "kind 'account' is not one of user, item, interaction"),
        ("a.jsonl", 7): ("rejected", "user_id is longer than 128 characters"),
        # an over-long reason is truncated in the ledger, never a reason to refuse an erasure
        ("a.jsonl", 8): ("accepted", "request reason truncated"),
        ("a.jsonl", 9): ("rejected", "request_id must not look like a path"),
        ("a.jsonl", 10): ("rejected", "duplicate request_id (first recorded in batch b20261128T230000Z)"),
        ("a.jsonl", 11): ("rejected", "unknown user_id"),
        ("a.jsonl", 12): ("rejected", "unknown item_id"),
        ("a.jsonl", 13): ("rejected", "no such interaction"),
        ("a.jsonl", 14): ("rejected", "received_at is not an ISO-8601 timestamp"),
        ("a.jsonl", 15): ("rejected", "user_id must be empty for kind item"),
        ("a.jsonl", 16): ("rejected", "line 16: not a JSON object"),
        ("a.jsonl", 18): ("accepted", None),
        ("a.jsonl", 19): ("accepted", "same target as an earlier request"),
        ("a.jsonl", 20): ("rejected", "user_id must be printable characters without leading or trailing spaces"),
        ("a.jsonl", 21): ("rejected", "user_id is required for kind interaction"),
        ("b.csv", 2): ("accepted", None),
        ("b.csv", 3): ("rejected", "missing column item_id"),
        ("e.csv", 2): ("rejected", "line 2: not valid UTF-8"),
        ("f.parquet", 1): ("accepted", None),
        ("f.parquet", 2): ("accepted", None),
    }
    assert set(rows) == set(expect)
    for where, (status, reason) in expect.items():
        row = rows[where]
        assert row["status"] == status, (where, row["reason"])
        if reason is None:
            assert not isinstance(row["reason"], str), (where, row["reason"])
        else:
            assert reason in row["reason"], (where, row["reason"])
    assert rows[("a.jsonl", 19)]["duplicate_of"] == "r-ok-user"
    assert rows[("a.jsonl", 18)]["received_at"] == "2026-11-28T10:00:00Z"  # +02:00 normalised to UTC
    assert rows[("f.parquet", 1)]["received_at"] == "2026-11-27T08:00:00Z"  # naive timestamp taken as UTC
    assert rows[("a.jsonl", 1)]["request_reason"].startswith("<b>delete me</b> من فضلك 👋🏽")
    assert rows[("a.jsonl", 18)]["user_index"] == 2 and rows[("a.jsonl", 18)]["item_index"] == 3
    assert (ledger["recorded_at"] == "2026-11-28T23:00:00Z").all()

    # the inbox is archived under the batch (skipped files stay), never deleted
    assert sorted(p.name for p in dirs["inbox"].iterdir()) == [".hidden.jsonl", "upload.jsonl.part"]
    archived = dirs["batches"] / summary["batch_id"] / "input"
    assert sorted(p.name for p in archived.iterdir()) == ["a.jsonl", "b.csv", "c.csv", "d.jsonl", "e.csv", "f.parquet"]
    assert summary["by_status"] == {"accepted": 7, "rejected": 18, "already_erased": 0}


def test_reingest_same_file_is_idempotent(dirs, catalog, key, tmp_path):
    src = write_jsonl(
        tmp_path / "req.jsonl",
        [req("r1", "user", "alice"), req("r2", "interaction", "bob", "sku-2"), req("r3", "user", "zoe")],
    )
    shutil.copy(src, dirs["inbox"] / "req.jsonl")
    first = ingest_batch(dirs["inbox"], dirs["batches"], dirs["ledger"], catalog, key, now=T1)
    assert first["by_status"] == {"accepted": 2, "rejected": 1, "already_erased": 0}

    shutil.copy(src, dirs["inbox"] / "req.jsonl")  # the same file again, next night
    second = ingest_batch(dirs["inbox"], dirs["batches"], dirs["ledger"], catalog, key, now=T2)
    assert second["rows"] == 3
    assert second["by_status"]["accepted"] == 0
    b2 = read_ledger(dirs["ledger"]).query("batch_id == @second['batch_id']").set_index("request_id")
    assert b2.loc["r1", "reason"] == "duplicate request_id (first recorded in batch b20261128T230000Z)"
    assert b2.loc["r2", "status"] == "rejected"
    assert b2.loc["r3", "reason"].startswith("unknown user_id")  # a rejected id is judged again, still bad
    # both nights are archived separately
    assert (dirs["batches"] / first["batch_id"] / "input" / "req.jsonl").is_file()
    assert (dirs["batches"] / second["batch_id"] / "input" / "req.jsonl").is_file()


def test_already_erased_after_erasure_and_duplicate_targets(dirs, catalog, key):
    inbox = dirs["inbox"]
    write_jsonl(
        inbox / "n1.jsonl",
        [req("r1", "user", "alice"), req("r2", "interaction", "carol", "sku-4"), req("r3", "item", item="sku-3")],
    )
    b1 = ingest_batch(inbox, dirs["batches"], dirs["ledger"], catalog, key, now=T1)["batch_id"]
    # r1, r2 erased; r3 failed the audit gate
    append_status(dirs["ledger"], b1, "audit", ["r1", "r2"], "erased", at=T1)
    with pytest.raises(DataError):
        append_status(dirs["ledger"], b1, "audit", ["r3"], "needs_review", at=T1)  # the stage file exists: immutable
    append_status(dirs["ledger"], b1, "audit", ["r1", "r2"], "erased", at=T1)  # retried task: identical, no-op
    append_status(dirs["ledger"], b1, "review", ["r3"], "needs_review", at=T2, reason="audit gate failed")
    state = read_ledger(dirs["ledger"]).set_index("request_id")
    assert state.loc["r1", "status"] == "erased" and state.loc["r1", "stage"] == "audit"
    assert state.loc["r3", "status"] == "needs_review" and state.loc["r3", "reason"] == "audit gate failed"
    with pytest.raises(DataError):
        append_status(dirs["ledger"], b1, "unlearn", ["r1"], "erased", at=T1)  # an earlier stage after a later one

    write_jsonl(
        inbox / "n2.jsonl",
        [
            req("r1", "user", "alice"),  # same id, erased since
            req("r4", "user", "alice"),  # new id, erased target
            req("r5", "interaction", "alice", "sku-1"),  # interaction of an erased user
            req("r6", "interaction", "carol", "sku-4"),  # erased interaction
            req("r7", "item", item="sku-3"),  # same target as r3 (pending review): recorded, erased once
            req("r1", "user", "bob"),  # id reused for a different target
        ],
    )
    ingest_batch(inbox, dirs["batches"], dirs["ledger"], catalog, key, now=T2)
    ledger = read_ledger(dirs["ledger"])
    b2 = ledger[ledger["batch_id"] == new_batch_id(T2)].reset_index(drop=True)
    assert b2["status"].tolist() == [
        "already_erased",
        "already_erased",
        "already_erased",
        "already_erased",
        "accepted",
        "rejected",
    ]
    assert (
        b2.loc[0, "reason"] == f"duplicate request_id (first recorded in batch {b1}); user already erased in batch {b1}"
    )
    assert b2.loc[1, "reason"] == f"user already erased in batch {b1}"
    assert b2.loc[3, "reason"] == f"interaction already erased in batch {b1}"
    assert b2.loc[4, "duplicate_of"] == "r3"
    assert "different request" in b2.loc[5, "reason"]
    # batch 1's history is untouched
    assert ledger[ledger["batch_id"] == b1]["status"].tolist() == ["erased", "erased", "needs_review"]


def test_pseudonyms_are_keyed_and_stable(dirs, catalog, key, tmp_path, monkeypatch):
    other = bytes.fromhex("1e" * 32)
    assert subject(key, "user", "alice", None) == subject(key, "user", "alice", None)
    assert subject(key, "user", "alice", None) != subject(other, "user", "alice", None)
    assert subject(key, "user", "alice", None) != subject(key, "interaction", "alice", "sku-1")
    # no id can forge another target's canonical string
    assert subject(key, "interaction", "a|b", "c") != subject(key, "interaction", "a", "b|c")
    assert load_key() == bytes.fromhex(KEY_HEX)
    for k in (key, b"x" * 100):  # standard HMAC-SHA256, also for keys longer than a block
        text = "interaction\x1falice\x1fsku-1"
        assert pseudonym(k, text) == hmac.new(k, text.encode(), hashlib.sha256).hexdigest()[:32]

    src = write_jsonl(tmp_path / "s.jsonl", [req("s1", "user", "alice"), req("s2", "interaction", "carol", "sku-4")])
    led1 = ingest_files([src], new_batch_id(T1), tmp_path / "l1", catalog, key)
    led2 = ingest_files([src], new_batch_id(T1), tmp_path / "l2", catalog, key)
    led3 = ingest_files([src], new_batch_id(T1), tmp_path / "l3", catalog, other)
    assert led1["subject"].tolist() == led2["subject"].tolist()
    assert led1.loc[0, "subject"] == subject(key, "user", "alice", None)
    assert not set(led1["subject"]) & set(led3["subject"])
    # deterministic bytes: same inputs, same ledger file
    assert (tmp_path / "l1" / new_batch_id(T1) / "requests.parquet").read_bytes() == (
        tmp_path / "l2" / new_batch_id(T1) / "requests.parquet"
    ).read_bytes()

    secret = tmp_path / ".tru-secret"
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match="token_hex"):
        load_key(secret)
    secret.write_text("a raw passphrase that is long enough\n")
    assert load_key(secret) == b"a raw passphrase that is long enough"
    secret.write_text("short")
    with pytest.raises(ConfigError, match="at least 16 are needed"):
        load_key(secret)


def test_unreadable_file_changes_nothing(dirs, catalog, key):
    inbox = dirs["inbox"]
    write_jsonl(inbox / "a.jsonl", [req("r1", "user", "alice")])
    (inbox / "b.parquet").write_bytes(b"PAR1 this is not really parquet PAR1")
    before = sorted((p.name, p.read_bytes()) for p in inbox.iterdir())
    with pytest.raises(DataError, match="b.parquet: not a readable Parquet file"):
        ingest_batch(inbox, dirs["batches"], dirs["ledger"], catalog, key, now=T1)
    assert sorted((p.name, p.read_bytes()) for p in inbox.iterdir()) == before
    assert not dirs["batches"].exists()
    assert not dirs["ledger"].exists() or not any(dirs["ledger"].rglob("*"))

    (inbox / "b.parquet").unlink()
    (inbox / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="unsupported file type"):
        ingest_batch(inbox, dirs["batches"], dirs["ledger"], catalog, key, now=T1)
    (inbox / "notes.txt").unlink()
    assert ingest_batch(inbox, dirs["batches"], dirs["ledger"], catalog, key, now=T1)["rows"] == 1  # the retry works


def test_empty_inbox_changes_nothing(dirs, catalog, key):
    summary = ingest_batch(dirs["inbox"], dirs["batches"], dirs["ledger"], catalog, key, now=T1)
    assert summary["batch_id"] is None and summary["rows"] == 0
    assert not dirs["ledger"].exists() and not dirs["batches"].exists()


def test_interrupted_archive_is_finished_not_reingested(dirs, catalog, key):
    f = write_jsonl(dirs["inbox"] / "a.jsonl", [req("r1", "user", "alice")])
    b1 = new_batch_id(T1)
    ingest_files(pending_files(dirs["inbox"]), b1, dirs["ledger"], catalog, key)  # crash before the move
    summary = ingest_batch(dirs["inbox"], dirs["batches"], dirs["ledger"], catalog, key, now=T2)
    assert summary["batch_id"] is None and summary["recovered"] == [f"a.jsonl -> {b1}"]
    assert (dirs["batches"] / b1 / "input" / "a.jsonl").is_file() and not f.exists()
    assert len(read_ledger(dirs["ledger"])) == 1


def test_public_view_has_no_raw_ids(dirs, catalog, key):
    write_jsonl(
        dirs["inbox"] / "a.jsonl",
        [
            req("req-alice-1", "user", "alice", reason="I am Alice"),
            req("req-bob-2", "interaction", "bob", "sku-2"),
            req("req-x", "stranger", "erin"),
            req("req-y", "user", "zoe"),
        ],
    )
    ingest_batch(dirs["inbox"], dirs["batches"], dirs["ledger"], catalog, key, now=T1)
    view = public_view(read_ledger(dirs["ledger"]))
    text = view.astype(str).to_csv()
    for raw in ["alice", "bob", "erin", "zoe", "sku-2", "req-", "Alice", "a.jsonl", "stranger"]:
        assert raw not in text, raw
    assert set(view["kind"]) == {"user", "interaction", "invalid"}
    assert view["subject"].notna().sum() == 3  # the row with an invalid kind has no subject


def test_catalog_from_dataset(tmp_path):
    ds, sp = tmp_path / "ds", tmp_path / "split"
    ds.mkdir()
    sp.mkdir()
    pd.DataFrame({"userID": [1, 0], "raw_id": ["u-b", "u-a"]}).to_csv(ds / "user_map.tsv", sep="\t", index=False)
    (sp / "split.json").write_text(json.dumps({"n_users": 2, "n_items": 3}))
    for name, pairs in (("train", [[0, 0], [1, 2]]), ("valid", [[0, 1]]), ("test", [[1, 0]])):
        pd.DataFrame(pairs, columns=["user", "item"]).to_parquet(sp / f"{name}.parquet")
    cat = Catalog.from_dataset(ds, sp)
    assert cat.user_index(["u-a", "u-b", "nope", None]).tolist() == [0, 1, -1, -1]
    assert cat.item_index(["0", "2", "3"]).tolist() == [0, 2, -1]  # no item map: the index is the raw id
    assert cat.has_pair(np.array([0, 0, 1, 1, -1]), np.array([1, 2, 0, 1, 0])).tolist() == [
        True,
        False,
        True,
        False,
        False,
    ]


def test_batch_ids():
    assert new_batch_id(datetime(2026, 11, 28, 23, 0, 5, 999)) == "b20261128T230005Z"
    assert batch_time("b20261128T230005Z") == datetime(2026, 11, 28, 23, 0, 5, tzinfo=UTC)
    with pytest.raises(DataError):
        batch_time("../b1")
