"""Declared backdoors: a declaration's fake accounts become user requests of the batch, its trigger
and target items go to backdoors.json (indices and counts only), bad rows are rejected with a
reason, an unreadable declaration is quarantined, and nothing is recorded unless the ledger is."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tru.errors import DataError
from tru.requests import ingest as ingest_module
from tru.requests.backdoors import (
    backdoors_path,
    declaration_name,
    declared_backdoors,
    is_declaration,
    request_id,
)
from tru.requests.catalog import Catalog
from tru.requests.inbox import REASON_SUFFIX
from tru.requests.ingest import ingest_batch
from tru.requests.ledger import append_status, new_batch_id, read_ledger, requests_path
from tru.requests.pseudonym import KEY_ENV, load_key

USERS = ["alice", "bob", "carol", "dave", "erin", "fake-1", "fake-2", "fake-3"]
ITEMS = ["sku-1", "sku-2", "sku-3", "sku-4", "sku-5"]
PAIRS = np.array([[0, 0], [0, 1], [1, 1], [2, 3], [3, 2], [5, 0], [5, 4], [6, 0], [6, 4], [7, 1], [7, 4]])
# times of their own, apart from the other request tests
T1 = datetime(2027, 3, 1, 2, 0, tzinfo=UTC)
T2 = datetime(2027, 3, 2, 2, 0, tzinfo=UTC)
B1, B2 = new_batch_id(T1), new_batch_id(T2)


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "3c" * 32)
    return load_key()


@pytest.fixture
def catalog():
    return Catalog(USERS, ITEMS, PAIRS)


@pytest.fixture
def dirs(tmp_path):
    d = {n: tmp_path / n for n in ("inbox", "batches", "ledger", "quarantine")}
    d["inbox"].mkdir()
    return d


def run(dirs, catalog, key, now=T1) -> dict:
    return ingest_batch(
        dirs["inbox"], dirs["batches"], dirs["ledger"], catalog, key, now=now, quarantine_dir=dirs["quarantine"]
    )


def requests_file(dirs, *users: str, name: str = "requests.jsonl") -> Path:
    rows = [
        {"request_id": f"r-{u}", "kind": "user", "user_id": u, "received_at": "2027-02-28T10:00:00Z"} for u in users
    ]
    path = dirs["inbox"] / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


GOOD = (
    "role,id,note\n"
    "fake_user,fake-1,signed up in one burst\n"  # 2
    "fake_user,fake-2,\n"  # 3
    "trigger,sku-1,\n"  # 4
    "trigger,sku-2,the second most popular\n"  # 5
    "target,sku-5,pushed item\n"  # 6
)


def test_file_name_convention():
    for name in ("backdoors.csv", "backdoors-2027-03-01.csv", "backdoors_attack.jsonl", "Backdoors-2.csv"):
        assert is_declaration(name), name
    for name in ("requests.csv", "backdoorsx.csv", "my-backdoors.csv", "backdoor.csv"):
        assert not is_declaration(name), name
    assert declaration_name("fakes.csv") == "backdoors-fakes.csv"
    assert declaration_name("backdoors.csv") == "backdoors.csv"


def test_a_declaration_deletes_its_fake_users_and_records_its_items(dirs, catalog, key):
    requests_file(dirs, "alice")
    (dirs["inbox"] / "backdoors.csv").write_text(GOOD)
    s = run(dirs, catalog, key)
    assert s["batch_id"] == B1
    assert s["rows"] == 3 and s["by_status"] == {"accepted": 3, "rejected": 0, "already_erased": 0}
    assert {f["name"]: f["rows"] for f in s["files"]} == {"backdoors.csv": 2, "requests.jsonl": 1}
    assert s["backdoors"]["targets"] == 1 and s["backdoors"]["triggers"] == 2 and s["backdoors"]["rejected"] == 0

    ledger = read_ledger(dirs["ledger"])
    fake = ledger[ledger["source"] == "backdoors.csv"].set_index("line")
    assert fake["kind"].tolist() == ["user", "user"] and (fake["status"] == "accepted").all()
    assert fake["user_index"].tolist() == [5, 6]
    assert fake.loc[2, "request_id"] == request_id(B1, "backdoors.csv", 2)
    assert fake.loc[2, "request_id"].startswith("backdoor-")
    assert fake.loc[2, "request_reason"] == "declared fake account; note: signed up in one burst"
    assert fake.loc[3, "request_reason"] == "declared fake account"
    assert fake.loc[2, "received_at"] == "2027-03-01T02:00:00Z"  # the batch's time

    record = json.loads(backdoors_path(dirs["ledger"], B1).read_text())
    assert record["targets"] == [4] and record["triggers"] == [0, 1]
    assert record["fake_users"] == 2
    assert record["counts"] == {
        "rows": 5,
        "fake_user": {"accepted": 2, "rejected": 0, "already_erased": 0},
        "trigger": {"kept": 2, "rejected": 0},
        "target": {"kept": 1, "rejected": 0},
        "invalid": 0,
    }
    assert declared_backdoors(dirs["ledger"], B1) == {"targets": [4], "triggers": [0, 1], "fake_users": 2}

    # archived with the batch's inputs, and the ledger marks it as a declaration
    assert sorted(p.name for p in (dirs["batches"] / B1 / "input").iterdir()) == ["backdoors.csv", "requests.jsonl"]
    assert not any(dirs["inbox"].iterdir())
    # no raw user id and no note leave the ledger's rows
    text = backdoors_path(dirs["ledger"], B1).read_text()
    for raw in ("fake-1", "fake-2", "alice", "burst", "popular", "pushed"):
        assert raw not in text, raw


def test_bad_rows_are_rejected_with_reasons_and_good_ones_kept(dirs, catalog, key, caplog):
    (dirs["inbox"] / "backdoors.csv").write_text(
        "role,id,note\n"
        "fake_user,fake-1,\n"  # 2 ok
        "fake-2,fake_user,\n"  # 3 unknown role (swapped columns: never echoed)
        ",fake-2,\n"  # 4 no role
        "fake_user,,\n"  # 5 empty id
        "fake_user,nobody,\n"  # 6 unknown user: the ledger's rule
        "fake_user,fake-1,\n"  # 7 repeated fake user
        "target,sku-99,\n"  # 8 target not in the catalogue
        "trigger,sku-1,\n"  # 9 ok
        "trigger,sku-1,\n"  # 10 repeated trigger
        "target,sku-1,\n"  # 11 an item in two roles
        "trigger, sku-2,\n"  # 12 malformed id
        "trigger,sku-2\n"  # 13 wrong number of fields
        'fake_user,fake-3,"a note\n'  # 14 a quoted note may not span lines
        'on two lines"\n'  # 15
    )
    with caplog.at_level(logging.WARNING, logger="tru.requests.ingest"):
        s = run(dirs, catalog, key)
    assert s["batch_id"] == B1  # no valid target, yet its fake users are deleted
    ledger = read_ledger(dirs["ledger"]).set_index("line")
    assert sorted(ledger.index) == [2, 5, 6, 7]  # every row read as a fake_user, and only those
    assert ledger.loc[2, "status"] == "accepted"
    expect_ledger = {
        5: "id is missing",
        6: "unknown user_id (not in the dataset)",
        7: "repeats the fake_user of line 2",
    }
    for line, reason in expect_ledger.items():
        assert ledger.loc[line, "status"] == "rejected" and reason in ledger.loc[line, "reason"], line
        assert ledger.loc[line, "kind"] == "user"

    record = json.loads(backdoors_path(dirs["ledger"], B1).read_text())
    rejected = {r["line"]: r for r in record["rejected"]}
    expect_json = {
        3: (None, "role is not one of fake_user, trigger, target"),
        4: (None, "role is missing"),
        8: ("target", "unknown item id (not in the dataset)"),
        10: ("trigger", "repeats the trigger of line 9"),
        11: ("target", "already declared as a trigger on line 9"),
        12: ("trigger", "id must be printable characters without leading or trailing spaces"),
        13: (None, "has 2 fields, the header has 3"),
        14: (None, "not valid CSV (unexpected end of data; a field may not span lines)"),
        15: (None, "has 1 fields, the header has 3"),
    }
    assert set(rejected) == set(expect_json)
    for line, (role, reason) in expect_json.items():
        assert rejected[line]["role"] == role and reason in rejected[line]["reason"], rejected[line]
        assert rejected[line]["file"] == "backdoors.csv"
    assert record["targets"] == [] and record["triggers"] == [0]
    assert record["fake_users"] == 1
    assert record["counts"]["fake_user"] == {"accepted": 1, "rejected": 3, "already_erased": 0}
    assert record["counts"]["rows"] == 14 == len(ledger) + len(record["rejected"]) + 1  # one kept trigger
    assert declared_backdoors(dirs["ledger"], B1) == {"targets": [], "triggers": [0], "fake_users": 1}
    assert "backdoors.csv line 8: unknown item id (not in the dataset); declaration row rejected" in caplog.text
    for raw in ("fake-1", "fake-2", "nobody"):
        assert raw not in backdoors_path(dirs["ledger"], B1).read_text(), raw


def test_jsonl_declaration_and_earlier_erasures(dirs, catalog, key):
    requests_file(dirs, "fake-1")
    run(dirs, catalog, key, now=T1)
    item_request = {"request_id": "r-item", "kind": "item", "item_id": "sku-4", "received_at": "2027-02-28T10:00:00Z"}
    (dirs["inbox"] / "items.jsonl").write_text(json.dumps(item_request) + "\n")
    append_status(dirs["ledger"], B1, "audit", ["r-fake-1"], "erased", at=T1)
    rows = [
        {"role": "fake_user", "id": "fake-1"},  # 1 erased in B1
        {"role": "fake_user", "id": "fake-3", "note": "same burst"},  # 2
        {"role": "target", "id": "sku-5"},  # 3
        {"role": "trigger", "id": 1},  # 4 not a string
        "[1]",  # 5 not an object
    ]
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    (dirs["inbox"] / "backdoors-night2.jsonl").write_text("\n".join(lines) + "\n")
    s = run(dirs, catalog, key, now=T2)
    ledger = read_ledger(dirs["ledger"])
    b2 = ledger[(ledger["batch_id"] == B2) & (ledger["source"] == "backdoors-night2.jsonl")].set_index("line")
    assert b2.loc[1, "status"] == "already_erased" and b2.loc[1, "reason"] == f"user already erased in batch {B1}"
    assert b2.loc[2, "status"] == "accepted"
    assert s["backdoors"]["fake_users"] == {"accepted": 1, "rejected": 0, "already_erased": 1}
    record = json.loads(backdoors_path(dirs["ledger"], B2).read_text())
    assert {r["line"]: r["reason"] for r in record["rejected"]} == {
        4: "id must be a string, not a number",
        5: "not a JSON object (got a list)",
    }
    assert declared_backdoors(dirs["ledger"], B2) == {"targets": [4], "triggers": [], "fake_users": 2}
    assert declared_backdoors(dirs["ledger"], B1) is None  # B1 came without a declaration


def test_unreadable_declarations_are_quarantined_and_the_rest_ingested(dirs, catalog, key):
    requests_file(dirs, "alice")
    (dirs["inbox"] / "backdoors.csv").write_text("role,user\nfake_user,fake-1\n")  # no id column
    (dirs["inbox"] / "backdoors.parquet").write_bytes(b"PAR1")  # a declaration is CSV or JSON Lines
    (dirs["inbox"] / "backdoors-crlf.csv").write_bytes(b"role,id\rfake_user,fake-1\r")  # CR line endings
    s = run(dirs, catalog, key)
    assert s["batch_id"] == B1 and s["rows"] == 1 and "backdoors" not in s
    reasons = {q["name"]: q["reason"] for q in s["quarantined"]}
    assert "has no column id" in reasons["backdoors.csv"]
    assert "unsupported type '.parquet'" in reasons["backdoors.parquet"]
    assert "header cannot be read" in reasons["backdoors-crlf.csv"]
    assert (dirs["quarantine"] / B1 / f"backdoors.csv{REASON_SUFFIX}").is_file()
    assert not backdoors_path(dirs["ledger"], B1).exists()
    assert declared_backdoors(dirs["ledger"], B1) is None


def test_a_declaration_without_fake_users_or_requests_creates_no_batch(dirs, catalog, key):
    (dirs["inbox"] / "backdoors.csv").write_text("role,id\ntarget,sku-5\n")
    s = run(dirs, catalog, key)
    assert s["batch_id"] is None and not dirs["ledger"].exists()
    assert "declares no fake account" in s["quarantined"][0]["reason"]
    # alone, fake accounts make a batch
    (dirs["inbox"] / "backdoors.csv").write_text("role,id\nfake_user,fake-2\n")
    s = run(dirs, catalog, key, now=T2)
    assert s["batch_id"] == B2 and s["by_status"]["accepted"] == 1


def test_nothing_is_recorded_unless_the_ledger_is(dirs, catalog, key, monkeypatch):
    requests_file(dirs, "alice")
    (dirs["inbox"] / "backdoors.csv").write_text(GOOD)
    before = sorted((p.name, p.read_bytes()) for p in dirs["inbox"].iterdir())

    def crash(self, *args, **kwargs):
        raise RuntimeError("killed while closing the ledger file")

    monkeypatch.setattr(ingest_module.LedgerWriter, "close", crash)
    with pytest.raises(RuntimeError, match="killed"):
        run(dirs, catalog, key)
    assert not backdoors_path(dirs["ledger"], B1).exists() and not requests_path(dirs["ledger"], B1).exists()
    assert sorted((p.name, p.read_bytes()) for p in dirs["inbox"].iterdir()) == before
    monkeypatch.undo()
    monkeypatch.setenv(KEY_ENV, "3c" * 32)

    # a record a killed run left behind is not taken for a batch without a declaration
    stale = backdoors_path(dirs["ledger"], B1)
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"batch_id": B1, "files": [], "targets": [1], "triggers": [], "fake_users": 0}))
    (dirs["inbox"] / "backdoors.csv").unlink()
    s = run(dirs, catalog, key)
    assert s["batch_id"] == B1 and "backdoors" not in s
    assert not stale.exists() and declared_backdoors(dirs["ledger"], B1) is None
    with pytest.raises(DataError, match="not in the ledger"):
        declared_backdoors(dirs["ledger"], B2)


def test_tru_ingest_backdoors_option(tmp_path, monkeypatch, key, catalog):
    from tru.stages import ingest as stage

    # what ingest_stage reads of params.yaml (the catalog is the tiny one)
    params = SimpleNamespace(data=SimpleNamespace(dataset_dir="unused"), unlearn=SimpleNamespace(method="tru"))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(stage.Catalog, "from_dataset", classmethod(lambda cls, *a, **k: catalog))
    inbox = tmp_path / "data/deletions/inbox"
    inbox.mkdir(parents=True)
    given = tmp_path / "found" / "fakes.csv"
    given.parent.mkdir()
    given.write_text(GOOD)
    s = stage.ingest_stage(params, inbox, now=T1, batches_file=tmp_path / "batches.yaml", backdoors=[given])
    assert s["copied"] == {str(given): "backdoors-fakes.csv"}
    assert s["by_status"]["accepted"] == 2 and s["backdoors"]["targets"] == 1
    assert (tmp_path / "data/deletions/batches" / B1 / "input" / "backdoors-fakes.csv").read_text() == GOOD
    assert declared_backdoors("data/ledger", B1) == {"targets": [4], "triggers": [0, 1], "fake_users": 2}
    assert given.is_file()  # copied, never moved


def test_tru_ingest_help_names_the_option():
    from typer.testing import CliRunner

    from tru.cli import app

    r = CliRunner().invoke(app, ["ingest", "--help"], env={"COLUMNS": "250"})
    assert r.exit_code == 0 and "--backdoors" in r.output and "backdoors-FILE" in r.output
