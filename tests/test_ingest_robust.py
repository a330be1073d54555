"""Ingest never loses a request nor gets stuck: name clashes, CSV quoting and line endings,
encodings, unreadable files (quarantined), symlinks and folders, empty batches, long reasons."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tru.errors import DataError
from tru.requests.catalog import Catalog
from tru.requests.inbox import REASON_SUFFIX, copy_into_inbox, quarantine_dir_for
from tru.requests.ingest import ingest_batch, ingest_files
from tru.requests.ledger import new_batch_id, read_ledger
from tru.requests.pseudonym import KEY_ENV, load_key
from tru.requests.schema import MAX_REASON_LEN

USERS = ["alice", "bob", "carol", "dave", "erin"]
ITEMS = ["sku-1", "sku-2", "sku-3", "sku-4"]
PAIRS = np.array([[0, 0], [0, 1], [1, 1], [2, 3], [3, 2]])
T1 = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
B1 = new_batch_id(T1)
HEADER = "request_id,kind,user_id,item_id,received_at,reason\n"


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "0f" * 32)
    return load_key()


@pytest.fixture
def catalog():
    return Catalog(USERS, ITEMS, PAIRS)


@pytest.fixture
def dirs(tmp_path):
    d = {n: tmp_path / n for n in ("inbox", "batches", "ledger", "quarantine")}
    d["inbox"].mkdir()
    return d


def req(rid: str, user: str = "alice", **extra) -> dict:
    return {"request_id": rid, "kind": "user", "user_id": user, "received_at": "2026-11-28T10:00:00Z", **extra}


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def csv_row(rid: str, user: str = "alice", reason: str = "") -> str:
    return f"{rid},user,{user},,2026-11-28T10:00:00Z,{reason}\n"


def run(dirs, catalog, key, now=T1, strict=False) -> dict:
    q = None if strict else dirs["quarantine"]
    return ingest_batch(dirs["inbox"], dirs["batches"], dirs["ledger"], catalog, key, now=now, quarantine_dir=q)


def quarantined(dirs, batch_id: str = B1) -> dict[str, str]:
    """name -> its one-line reason, for everything quarantined by the run `batch_id`."""
    folder = dirs["quarantine"] / batch_id
    if not folder.is_dir():
        return {}
    out = {}
    for p in folder.iterdir():
        if p.name.endswith(REASON_SUFFIX):
            continue
        text = Path(f"{p}{REASON_SUFFIX}").read_text(encoding="utf-8")
        assert text.endswith("\n") and text.count("\n") == 1, text  # one line
        out[p.name] = text.strip()
    return out


def archived(dirs, batch_id: str = B1) -> list[str]:
    folder = dirs["batches"] / batch_id / "input"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def check_accounting(summary: dict, dirs) -> pd.DataFrame:
    """Rows read = statuses written, per file and in all; one status per (file, line)."""
    ledger = read_ledger(dirs["ledger"])
    ledger = ledger[ledger["batch_id"] == summary["batch_id"]]
    per_file = ledger.groupby("source").size().to_dict()
    for f in summary["files"]:
        assert per_file.get(f["name"], 0) == f["rows"], f
    assert len(ledger) == summary["rows"] == sum(summary["by_status"].values())
    assert ledger.groupby(["source", "line"]).size().max() == 1
    return ledger


# --- 1. nothing is ever overwritten in the inbox ----------------------------------------------


def test_copy_into_inbox_never_overwrites(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "req.jsonl").write_text("pending\n")
    src = tmp_path / "req.jsonl"
    src.write_text("new\n")
    first, second = copy_into_inbox(src, inbox), copy_into_inbox(src, inbox)
    assert (first.name, second.name) == ("req-2.jsonl", "req-3.jsonl")
    assert (inbox / "req.jsonl").read_text() == "pending\n"  # untouched
    assert first.read_text() == second.read_text() == "new\n"
    assert sorted(p.name for p in inbox.iterdir()) == ["req-2.jsonl", "req-3.jsonl", "req.jsonl"]  # no temporaries


@pytest.fixture
def stage_env(tmp_path, monkeypatch, key, catalog):
    """`ingest_stage` in a scratch repository root (relative data/ paths) with the tiny catalog."""
    from tru.stages import ingest as stage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(stage.Catalog, "from_dataset", classmethod(lambda cls, *a, **k: catalog))
    inbox = tmp_path / "data/deletions/inbox"
    inbox.mkdir(parents=True)
    return stage, inbox, tmp_path / "batches.yaml"


def pass_gate(batch_id: str) -> None:
    path = Path("reports") / batch_id / "audit.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"verdict": "pass"}')


def test_tru_ingest_file_never_overwrites_a_pending_one(stage_env, params, tmp_path):
    stage, inbox, batches_file = stage_env
    (inbox / "req.jsonl").write_text(jsonl([req("r-pending", "bob")]))
    given = tmp_path / "elsewhere" / "req.jsonl"
    given.parent.mkdir()
    given.write_text(jsonl([req("r-given", "carol")]))
    s = stage.ingest_stage(params, inbox, [given], now=T1, batches_file=batches_file)
    assert s["copied"] == {str(given): "req-2.jsonl"}
    assert s["rows"] == 2 and s["by_status"]["accepted"] == 2  # both requests got a status
    assert sorted(read_ledger("data/ledger")["request_id"]) == ["r-given", "r-pending"]
    assert sorted(p.name for p in Path("data/deletions/batches", B1, "input").iterdir()) == ["req-2.jsonl", "req.jsonl"]
    assert given.is_file()  # the given file is copied, never moved


def test_tru_ingest_of_a_file_already_in_the_inbox_does_not_copy_it(stage_env, params):
    stage, inbox, batches_file = stage_env
    (inbox / "req.jsonl").write_text(jsonl([req("r1")]))
    s = stage.ingest_stage(params, inbox, [inbox / "req.jsonl"], now=T1, batches_file=batches_file)
    assert s["copied"] == {str(inbox / "req.jsonl"): "req.jsonl"} and s["rows"] == 1


# --- 2. CSV quoting and line endings ------------------------------------------------------------


def test_csv_unterminated_quote_is_quarantined_whole(dirs, catalog, key):
    rows = "".join(csv_row(f"r{i}") for i in range(5))
    (dirs["inbox"] / "open.csv").write_text(HEADER + csv_row("r-open", reason='"never closed') + rows)
    (dirs["inbox"] / "ok.jsonl").write_text(jsonl([req("j1")]))
    s = run(dirs, catalog, key)
    assert [f["name"] for f in s["files"]] == ["ok.jsonl"]
    assert "line 2: a quoted field is never closed (unterminated quote)" in quarantined(dirs)["open.csv"]
    assert [q["name"] for q in s["quarantined"]] == ["open.csv"]
    check_accounting(s, dirs)
    assert not list(dirs["inbox"].iterdir())


def test_csv_stray_quote_swallowing_rows_is_refused_but_multiline_fields_are_read(dirs, catalog, key):
    stray = HEADER + csv_row("r0", reason='"oops') + csv_row("r1") + csv_row("r2", reason='x"') + csv_row("r3")
    (dirs["inbox"] / "stray.csv").write_text(stray)
    legit = HEADER + csv_row("m1", reason='"first line\nsecond line"') + csv_row("m2", "bob")
    (dirs["inbox"] / "multi.csv").write_text(legit)
    s = run(dirs, catalog, key)
    assert "looks like a row" in quarantined(dirs)["stray.csv"]
    ledger = check_accounting(s, dirs).set_index("request_id")
    assert list(ledger.index) == ["m1", "m2"] and (ledger["status"] == "accepted").all()
    assert ledger.loc["m1", "request_reason"] == "first line\nsecond line"
    assert ledger.loc["m1", "line"] == 3  # the physical line where the record ends


def test_csv_bare_cr_is_data_and_crlf_a_line_end(dirs, catalog, key):
    (dirs["inbox"] / "cr.csv").write_text(
        HEADER + csv_row("c1", reason="hello\rworld") + csv_row("c2", "bo\rb") + csv_row("c3"), newline=""
    )
    (dirs["inbox"] / "crlf.csv").write_text(
        (HEADER + csv_row("d1", "bob") + csv_row("d2", "carol")).replace("\n", "\r\n")
    )
    (dirs["inbox"] / "maconly.csv").write_bytes((HEADER + csv_row("e1") + csv_row("e2")).replace("\n", "\r").encode())
    s = run(dirs, catalog, key)
    ledger = check_accounting(s, dirs).set_index("request_id")
    assert {f["name"]: f["rows"] for f in s["files"]} == {"cr.csv": 3, "crlf.csv": 2}  # one row per request
    assert ledger.loc["c1", "status"] == "accepted" and ledger.loc["c1", "request_reason"] == "hello\rworld"
    assert ledger.loc["c2", "status"] == "rejected" and "user_id must be printable" in ledger.loc["c2", "reason"]
    assert ledger.loc[["c3", "d1", "d2"], "status"].tolist() == ["accepted"] * 3
    assert "bare CR" in quarantined(dirs)["maconly.csv"]  # CR-only line endings: refused, not merged


# --- 3. encodings -----------------------------------------------------------------------------


def test_utf16_and_utf32_with_a_bom_are_decoded_without_one_quarantined(dirs, catalog, key):
    rows = [req("u1"), req("u2", "bob"), req("u3", "carol")]
    (dirs["inbox"] / "a16.jsonl").write_bytes(jsonl(rows).encode("utf-16"))
    (dirs["inbox"] / "b32.jsonl").write_bytes(jsonl([req("u4", "dave")]).encode("utf-32"))
    (dirs["inbox"] / "c16.csv").write_bytes((HEADER + csv_row("u5", "erin", "naïve ✓")).encode("utf-16"))
    (dirs["inbox"] / "d8.csv").write_bytes((HEADER + csv_row("u6")).encode("utf-8-sig"))
    (dirs["inbox"] / "e16.jsonl").write_bytes(jsonl([req("u7")]).encode("utf-16-le"))  # no BOM
    s = run(dirs, catalog, key)
    assert {f["name"]: f["rows"] for f in s["files"]} == {"a16.jsonl": 3, "b32.jsonl": 1, "c16.csv": 1, "d8.csv": 1}
    ledger = check_accounting(s, dirs).set_index("request_id")
    assert sorted(ledger.index) == ["u1", "u2", "u3", "u4", "u5", "u6"]
    assert ledger.loc["u5", "request_reason"] == "naïve ✓"
    assert "without a byte-order mark" in quarantined(dirs)["e16.jsonl"]


# --- 4. unreadable files: quarantined, never blocking -----------------------------------------


def test_unreadable_files_are_quarantined_and_the_rest_ingested(dirs, catalog, key, caplog):
    inbox = dirs["inbox"]
    (inbox / "a.jsonl").write_text(jsonl([req("r1")]))
    (inbox / "b.parquet").write_bytes(b"PAR1 this is not really parquet PAR1")
    (inbox / "c.txt").write_text("hello")
    table = pa.Table.from_arrays(
        [pa.array(["p1"]), pa.array(["p2"]), pa.array(["user"]), pa.array(["bob"])],
        names=["request_id", "request_id", "kind", "user_id"],
    )
    pq.write_table(table, inbox / "d.parquet")
    (inbox / "e.jsonl").write_text(jsonl([req("r2", "bob")]) + '{"a": 1}{"b": 2}\n')  # found mid-file: a retry
    with caplog.at_level(logging.WARNING):
        s = run(dirs, catalog, key)
    reasons = quarantined(dirs)
    assert set(reasons) == {"b.parquet", "c.txt", "d.parquet", "e.jsonl"}
    assert "not a readable Parquet file" in reasons["b.parquet"]
    assert "unsupported file type '.txt'" in reasons["c.txt"]
    assert "column request_id appears more than once" in reasons["d.parquet"]
    assert "line 2 holds several JSON objects" in reasons["e.jsonl"]
    assert all("\n" not in m and "Traceback" not in m for m in caplog.messages)
    assert sum("quarantined as" in m for m in caplog.messages) == 4
    assert [f["name"] for f in s["files"]] == ["a.jsonl"] and archived(dirs) == ["a.jsonl"]
    check_accounting(s, dirs)
    assert not list(inbox.iterdir())
    assert (dirs["quarantine"] / B1 / "b.parquet").read_bytes() == b"PAR1 this is not really parquet PAR1"


def test_without_a_quarantine_folder_an_unreadable_file_changes_nothing(dirs, catalog, key):
    (dirs["inbox"] / "a.jsonl").write_text(jsonl([req("r1")]))
    (dirs["inbox"] / "b.csv").write_text(HEADER + csv_row("r2", reason='"open'))
    with pytest.raises(DataError, match=r"b.csv: line 2: a quoted field is never closed") as err:
        run(dirs, catalog, key, strict=True)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in dirs["inbox"].iterdir()) == ["a.jsonl", "b.csv"]
    assert not dirs["batches"].exists() and not dirs["quarantine"].exists()
    assert not dirs["ledger"].exists() or not any(dirs["ledger"].rglob("*.parquet"))


def test_tru_ingest_of_an_unreadable_file_does_not_block_the_next_night(stage_env, params, tmp_path):
    stage, inbox, batches_file = stage_env
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"not parquet at all")
    s = stage.ingest_stage(params, inbox, [bad], now=T1, batches_file=batches_file)
    assert s["batch_id"] is None and not batches_file.exists()  # nothing registered
    q = quarantine_dir_for(inbox) / B1
    assert q == tmp_path / "data/deletions/quarantine" / B1
    assert "not a readable Parquet file" in (q / f"broken.parquet{REASON_SUFFIX}").read_text()
    assert not list(inbox.iterdir())
    # the next night: a valid file beside a new unreadable one is ingested and registered
    (inbox / "good.jsonl").write_text(jsonl([req("r1")]))
    (inbox / "bad.csv").write_text("request_id,kind,kind\nr2,user,user\n")
    s2 = stage.ingest_stage(params, inbox, now=T2, batches_file=batches_file)
    assert s2["batch_id"] == new_batch_id(T2) and s2["rows"] == 1 and s2["registered"]["id"] == s2["batch_id"]
    assert "names column kind more than once" in s2["quarantined"][0]["reason"]
    assert not list(inbox.iterdir())


def deny(monkeypatch, module, name: str) -> None:
    """Make `open` in `module` fail for files called `name`, as without read permission
    (chmod does not stop root, who may run the tests)."""
    real = open

    def fake_open(path, *args, **kwargs):
        if Path(path).name == name:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(module, "open", fake_open, raising=False)


def test_tru_ingest_refuses_a_file_it_cannot_open_before_copying(stage_env, params, tmp_path, monkeypatch):
    stage, inbox, batches_file = stage_env
    ok, locked = tmp_path / "ok.jsonl", tmp_path / "locked.jsonl"
    ok.write_text(jsonl([req("r1")]))
    locked.write_text(jsonl([req("r2")]))
    deny(monkeypatch, stage, "locked.jsonl")
    with pytest.raises(DataError, match="locked.jsonl: cannot be read \\(Permission denied\\); nothing copied"):
        stage.ingest_stage(params, inbox, [ok, locked], now=T1, batches_file=batches_file)
    assert not list(inbox.iterdir())


def test_an_inbox_file_without_read_permission_is_quarantined(dirs, catalog, key, monkeypatch):
    from tru.requests import readers

    (dirs["inbox"] / "a.jsonl").write_text(jsonl([req("r1")]))
    (dirs["inbox"] / "locked.csv").write_text(HEADER + csv_row("r2"))
    deny(monkeypatch, readers, "locked.csv")
    s = run(dirs, catalog, key)
    assert quarantined(dirs)["locked.csv"] == "locked.csv: cannot be read (Permission denied)"
    assert archived(dirs) == ["a.jsonl"] and s["rows"] == 1


# --- 5. symlinks, folders, partial uploads ------------------------------------------------------


def test_symlinks_and_folders_are_quarantined_unfollowed_partials_left(dirs, catalog, key, tmp_path, caplog):
    outside = tmp_path / "outside.jsonl"
    outside.write_text(jsonl([req("secret", "erin")]))
    inbox = dirs["inbox"]
    (inbox / "link.jsonl").symlink_to(outside)
    (inbox / "sub").mkdir()
    (inbox / "sub" / "inner.jsonl").write_text(jsonl([req("inner")]))
    (inbox / "upload.jsonl.part").write_text(jsonl([req("partial")]))
    (inbox / "a.jsonl").write_text(jsonl([req("r1")]))
    with caplog.at_level(logging.WARNING):
        s = run(dirs, catalog, key)
    reasons = quarantined(dirs)
    assert "symbolic link: never followed" in reasons["link.jsonl"] and "a folder" in reasons["sub"]
    moved = dirs["quarantine"] / B1 / "link.jsonl"
    assert moved.is_symlink() and os.readlink(moved) == str(outside)  # moved as a link
    assert outside.read_text() == jsonl([req("secret", "erin")])
    assert (dirs["quarantine"] / B1 / "sub" / "inner.jsonl").is_file()
    assert set(read_ledger(dirs["ledger"])["request_id"]) == {"r1"}  # nothing behind the link was read
    assert archived(dirs) == ["a.jsonl"]
    assert sorted(p.name for p in inbox.iterdir()) == ["upload.jsonl.part"]  # waits until renamed
    assert s["skipped"] == [{"name": "upload.jsonl.part", "reason": s["skipped"][0]["reason"]}]
    assert any("upload.jsonl.part: a partial upload" in m for m in caplog.messages)


# --- 6. a batch without requests is not created ---------------------------------------------------


def test_a_batch_without_requests_is_not_created(dirs, catalog, key):
    (dirs["inbox"] / "empty.jsonl").write_bytes(b"")
    (dirs["inbox"] / "header.csv").write_text(HEADER)
    (dirs["inbox"] / "blank.jsonl").write_text("\n\n  \n")
    s = run(dirs, catalog, key)
    assert s["batch_id"] is None and s["rows"] == 0
    assert not dirs["ledger"].exists() and not dirs["batches"].exists()
    assert set(quarantined(dirs)) == {"empty.jsonl", "header.csv", "blank.jsonl"}
    assert all("holds no requests" in r for r in quarantined(dirs).values())
    assert not list(dirs["inbox"].iterdir())


def test_ingest_files_without_rows_writes_nothing(tmp_path, catalog, key):
    empty = tmp_path / "empty.csv"
    empty.write_text(HEADER)
    ledger = ingest_files([empty], B1, tmp_path / "ledger", catalog, key)
    assert ledger.empty and not (tmp_path / "ledger").exists()


def test_empty_files_beside_requests_are_archived_with_their_batch(dirs, catalog, key):
    (dirs["inbox"] / "empty.jsonl").write_bytes(b"")
    (dirs["inbox"] / "a.jsonl").write_text(jsonl([req("r1")]))
    s = run(dirs, catalog, key)
    assert {f["name"]: f["rows"] for f in s["files"]} == {"a.jsonl": 1, "empty.jsonl": 0}
    assert archived(dirs) == ["a.jsonl", "empty.jsonl"] and not quarantined(dirs)


# --- 7. an over-long reason is truncated, never a reason to refuse ------------------------------


def test_an_overlong_reason_is_truncated_not_rejected(dirs, catalog, key):
    long_reason = "é" * (MAX_REASON_LEN + 1)
    (dirs["inbox"] / "a.jsonl").write_text(
        jsonl([req("r1", reason=long_reason), req("r2", "bob", reason="x" * 50_000), req("r3", "carol", reason="ok")])
    )
    (dirs["inbox"] / "b.csv").write_text(HEADER + csv_row("r4", "dave", "y" * 3000))
    s = run(dirs, catalog, key)
    ledger = check_accounting(s, dirs).set_index("request_id")
    assert (ledger["status"] == "accepted").all()
    assert ledger.loc["r1", "request_reason"] == "é" * MAX_REASON_LEN + "…"
    assert len(ledger.loc["r2", "request_reason"]) == MAX_REASON_LEN + 1
    assert ledger.loc["r1", "reason"] == f"request reason truncated to its first {MAX_REASON_LEN} characters"
    assert ledger.loc["r3", "request_reason"] == "ok" and pd.isna(ledger.loc["r3", "reason"])
    assert ledger.loc["r4", "status"] == "accepted"
