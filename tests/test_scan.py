"""`tru scan`: where the erased subjects' data still lives.

A tiny project tree (conftest's `make_tiny_data` and `tiny_params`, the ledger written through
the real ledger API) holds a batch's subjects, a user, an item and an interaction, planted in
every form the scan reads: the split's Parquet (indices), a CSV and a JSON Lines export (raw
ids), the dataset's `.inter`, maps and feature matrix, an `.npy` of index pairs, the batch's
forget set and the archived request file, content-addressed objects of a DVC cache (one inside a
`.dir` listing of a dataset folder) and of a local DVC remote, and checkpoints whose lineage
points at those splits. The scan must find every copy (it has power), find nothing in the same
tree once those rows are gone (exit 0), report the ledger as the record of requests, and never
print or write a raw id.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import make_tiny_data, tiny_params
from test_requests import write_jsonl
from typer.testing import CliRunner

from tru.cli import app
from tru.data.mmrec import write_folder
from tru.io import sha256_file, sha256_tree
from tru.lifecycle.scan import (
    EXIT_FOUND,
    LEDGER_NAME,
    Blob,
    Subjects,
    assess,
    decode,
    resolve_indices,
    scan,
    sniff,
    subjects_from_batches,
    subjects_from_file,
    summary_lines,
)
from tru.requests.ledger import LedgerWriter, append_status, batch_time
from tru.requests.pseudonym import subject
from tru.requests.schema import LEDGER_SCHEMA

B = "b20260301T020000Z"
KEY = bytes.fromhex("0f" * 32)
USER, ITEM, PAIR = 3, 7, (10, None)  # the erased user, item and interaction (its item is picked below)
DATA = make_tiny_data()
N_USERS, N_ITEMS = DATA.n_users, DATA.n_items
RAW_USERS = [f"member-{k:04d}-zq" for k in range(N_USERS)]
RAW_ITEMS = [f"sku-{k:03d}-zq" for k in range(N_ITEMS)]
PAIR_ITEM = int(next(i for u, i in DATA.train if u == PAIR[0] and i != ITEM))
INPUT_NAME = "jane-doe-requests.jsonl"  # a request file's name is chosen by its sender
SECRET_TEXT = [RAW_USERS[USER], RAW_ITEMS[ITEM], RAW_USERS[PAIR[0]], RAW_ITEMS[PAIR_ITEM], "ghost-zq", "jane-doe"]


def all_rows() -> pd.DataFrame:
    parts = [(DATA.train, 0), (DATA.valid, 1), (DATA.test, 2)]
    frame = pd.concat(
        [pd.DataFrame({"user": p[:, 0], "item": p[:, 1], "x_label": x}) for p, x in parts], ignore_index=True
    )
    frame["timestamp"] = 1_700_000_000 + np.arange(len(frame))
    return frame


def subject_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows of the subjects: the user's, the item's, and the pair's."""
    return (
        (frame["user"] == USER).to_numpy()
        | (frame["item"] == ITEM).to_numpy()
        | ((frame["user"] == PAIR[0]) & (frame["item"] == PAIR_ITEM)).to_numpy()
    )


def requests() -> list[dict]:
    at = "2026-02-28T10:00:00Z"
    return [
        {"request_id": "r-1", "kind": "user", "user_id": RAW_USERS[USER], "received_at": at},
        {"request_id": "r-2", "kind": "item", "item_id": RAW_ITEMS[ITEM], "received_at": at},
        {
            "request_id": "r-3",
            "kind": "interaction",
            "user_id": RAW_USERS[PAIR[0]],
            "item_id": RAW_ITEMS[PAIR_ITEM],
            "received_at": at,
        },
        {"request_id": "r-4", "kind": "user", "user_id": "ghost-zq", "received_at": at},  # rejected: not a subject
    ]


def write_ledger(root: Path) -> None:
    """The batch's requests as ingest records them: raw ids and resolved indices."""
    index = {"user": {r: k for k, r in enumerate(RAW_USERS)}, "item": {r: k for k, r in enumerate(RAW_ITEMS)}}
    cols: dict[str, list] = {name: [] for name in LEDGER_SCHEMA.names}
    for line, r in enumerate(requests(), 1):
        uid, iid = r.get("user_id"), r.get("item_id")
        known = (uid is None or uid in index["user"]) and (iid is None or iid in index["item"])
        values = {
            "batch_id": B,
            "source": INPUT_NAME,
            "line": line,
            "request_id": r["request_id"],
            "kind": r["kind"],
            "user_id": uid,
            "item_id": iid,
            "user_index": index["user"].get(uid, -1) if uid else -1,
            "item_index": index["item"].get(iid, -1) if iid else -1,
            "subject": subject(KEY, r["kind"], uid, iid),
            "status": "accepted" if known else "rejected",
            "reason": None if known else "unknown user_id (not in the dataset)",
            "duplicate_of": None,
            "received_at": r["received_at"],
            "recorded_at": "2026-03-01T02:00:00Z",
            "request_reason": None,
        }
        for k, v in values.items():
            cols[k].append(v)
    ledger = root / "data" / "ledger"
    with LedgerWriter(ledger, B) as w:
        w.write(pa.table(cols, schema=LEDGER_SCHEMA))
        w.close([{"name": INPUT_NAME, "rows": 4}], dataset={"name": "tiny", "dataset_dir": "data/datasets/tiny"})
    append_status(ledger, B, "unlearn", ["r-1", "r-2", "r-3"], "erased", batch_time(B))


def parquet(frame: pd.DataFrame, path: Path, cols=("user", "item", "timestamp")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame[list(cols)].astype("int64").to_parquet(path, index=False)
    return path


def checkpoint(folder: Path, meta: dict) -> None:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({"user_emb": np.zeros((N_USERS, 2), np.float32)}, str(folder / "model.safetensors"))
    meta = {"model": {"backbone": "mgcn"}, "weights_sha256": sha256_file(folder / "model.safetensors"), **meta}
    (folder / "checkpoint.json").write_text(json.dumps(meta))


def put_object(store: Path, data: bytes, suffix: str = "") -> str:
    md5 = hashlib.md5(data).hexdigest()
    path = store / "files" / "md5" / md5[:2] / (md5[2:] + suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return md5 + suffix


def build(root: Path, planted: bool) -> Path:
    """The project tree; `planted`: the subjects' rows are in every copy, else they are gone
    from all of them (the ledger stays: the record of what was asked)."""
    root.mkdir(parents=True, exist_ok=True)
    tiny_params(root)
    rows = all_rows()
    hit = subject_rows(rows)
    kept = rows if planted else rows[~hit]
    # the dataset folder: .inter, maps, feature matrices (the erased user and item leave the maps once purged)
    users = range(N_USERS) if planted else [u for u in range(N_USERS) if u != USER]
    items = range(N_ITEMS) if planted else [i for i in range(N_ITEMS) if i != ITEM]
    user_map = pd.DataFrame({"userID": list(users), "raw_id": [RAW_USERS[u] for u in users]})
    item_map = pd.DataFrame({"itemID": list(items), "raw_id": [RAW_ITEMS[i] for i in items], "title": "t"})
    inter = kept.rename(columns={"user": "userID", "item": "itemID"}).assign(rating=5.0)
    write_folder(root / "data/datasets/tiny", "tiny", inter, DATA.features, item_map=item_map, user_map=user_map)
    # the split (indices), as `tru split` writes it
    split = root / "data/split"
    for name, x in (("train", 0), ("valid", 1), ("test", 2)):
        parquet(kept[kept["x_label"] == x], split / f"{name}.parquet")
    (split / "split.json").write_text(json.dumps({"name": "tiny", "n_users": N_USERS, "n_items": N_ITEMS}))
    # the batch's sets: the retain set without the subjects; the forget set, before the purge
    sets = root / f"data/batches/{B}/sets"
    train = rows[rows["x_label"] == 0]
    parquet(train[~subject_rows(train)], sets / "train.parquet")
    batch = {"id": B, "prior_train_sha256": sha256_file(split / "train.parquet")}
    (sets / "split.json").write_text(
        json.dumps({"name": "tiny", "n_users": N_USERS, "n_items": N_ITEMS, "batch": batch})
    )
    if planted:
        parquet(train[subject_rows(train)], sets / "forget.parquet")
    # the ledger and, before the purge, the archived request file
    write_ledger(root)
    requests_parquet = root / f"data/ledger/{B}/requests.parquet"
    if planted:
        archive = root / f"data/deletions/batches/{B}/input"
        archive.mkdir(parents=True)
        write_jsonl(archive / INPUT_NAME, requests())
    # exports of raw ids (CSV, JSON Lines) and an array of index pairs
    exports = root / "data/exports"
    exports.mkdir(parents=True)
    raw = pd.DataFrame(
        {
            "user_id": [RAW_USERS[u] for u in kept["user"]],
            "item_id": [RAW_ITEMS[i] for i in kept["item"]],
            "timestamp": kept["timestamp"],
        }
    )
    raw.to_csv(exports / "ratings.csv", index=False)
    write_jsonl(exports / "events.jsonl", raw.head(40 if not planted else len(raw)).to_dict("records"))
    np.save(exports / "pairs.npy", kept[["user", "item", "timestamp"]].to_numpy(np.int64))
    if planted:  # a copy of the ledger outside data/ledger is a copy like any other
        (exports / "requests-copy.parquet").write_bytes(requests_parquet.read_bytes())
    # models: the base trained on the split; the batch's TRU model and an exact retrain
    checkpoint(root / "data/models/base", {"data": {"split_sha256": sha256_tree(split), "dataset": "tiny"}})
    for name, method in (("unlearned", "tru"), ("retrain", "retrain")):
        checkpoint(root / f"data/batches/{B}/{name}", {"batch": B, "method": method, "base_model": "data/models/base"})
    # DVC: the cache holds an older split (content-addressed, no name) and a dataset folder's
    # listing; the local remote a copy of the export; an S3 remote cannot be read
    dvc = root / ".dvc"
    dvc.mkdir()
    (dvc / "config").write_text(
        "[core]\n    remote = store\n"
        "['remote \"store\"']\n    url = ../../remote-store\n"
        "['remote \"s3\"']\n    url = s3://bucket/tru\n"
    )
    cache = dvc / "cache"
    put_object(cache, requests_parquet.read_bytes())  # the ledger, versioned by DVC: its record, not a copy
    if planted:
        buf = io.BytesIO()
        train.to_parquet(buf, index=False)
        put_object(cache, buf.getvalue())
        members = [
            {"md5": put_object(cache, (root / "data/datasets/tiny" / n).read_bytes()), "relpath": n}
            for n in ("item_map.tsv", "signal_feat.npy")
        ]
        put_object(cache, json.dumps(members).encode(), ".dir")
        put_object(root.parent / "remote-store", (exports / "ratings.csv").read_bytes())
    else:
        (root.parent / "remote-store").mkdir()
    return root


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("planted") / "repo", planted=True)


@pytest.fixture(scope="module")
def purged(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("purged") / "repo", planted=False)


def invoke(root: Path, monkeypatch, *args: str):
    monkeypatch.chdir(root)
    return CliRunner().invoke(app, ["scan", *args], env={"COLUMNS": "250", "TRU_VERBOSE": "0"})


def location(report: dict, name: str) -> dict:
    return next(loc for loc in report["locations"] if loc["location"] == name)


def by_path(entries: list[dict]) -> dict[str, dict]:
    return {e.get("path") or e.get("in") or e["object"]: e for e in entries}


# ---------------------------------------------------------------------------------- power


def test_every_planted_copy_is_found_and_the_exit_status_says_so(planted, monkeypatch):
    r = invoke(planted, monkeypatch, "--batch", B, "--out", "scan.json")
    assert r.exit_code == EXIT_FOUND, r.output
    report = json.loads((planted / "scan.json").read_text())
    assert report["subjects"] | {"sources": None} == {
        "sources": None,
        "dataset": "tiny",
        "users": 1,
        "items": 1,
        "interactions": 1,  # the rejected request names no subject
        "resolved_to_indices": {"users": 1, "items": 1, "interactions": 1},
    }
    tree = by_path(location(report, "work tree")["holding"])
    rows = all_rows()
    n_user, n_item = int((rows["user"] == USER).sum()), int((rows["item"] == ITEM).sum())
    n_pair = int(((rows["user"] == PAIR[0]) & (rows["item"] == PAIR_ITEM)).sum())
    everything = {"users": n_user, "items": n_item, "interactions": n_pair}
    for path, fmt in (
        ("data/exports/ratings.csv", "csv"),  # raw ids
        ("data/exports/events.jsonl", "jsonl"),
        ("data/datasets/tiny/tiny.inter", "inter"),  # indices, read through the folder's own maps
        ("data/exports/pairs.npy", "npy"),  # (user, item, timestamp) index triples
    ):
        assert tree[path]["format"] == fmt, path
        assert tree[path]["rows"] == everything, path
        assert tree[path]["subjects"] == {"users": 1, "items": 1, "interactions": 1}, path
    assert tree["data/exports/ratings.csv"]["columns"] == ["user (raw id)", "item (raw id)", "timestamp"]
    train = rows[rows["x_label"] == 0]
    assert tree["data/split/train.parquet"]["rows"]["users"] == int((train["user"] == USER).sum())
    assert tree[f"data/batches/{B}/sets/forget.parquet"]["rows"]["interactions"] >= 1
    assert tree["data/datasets/tiny/user_map.tsv"]["rows"] == {"users": 1, "items": 0, "interactions": 0}
    assert tree["data/datasets/tiny/signal_feat.npy"]["rows"]["items"] == 1  # the item's feature row
    archived = tree[f"data/deletions/batches/{B}/input/file-1-of-1"]  # named by position
    assert archived["rows"] == {"users": 1, "items": 1, "interactions": 1}
    assert f"data/batches/{B}/sets/train.parquet" not in tree  # the retain set no longer holds them
    # models: the base trained on them; the batch's TRU model erased them approximately (listed,
    # not counted); its exact retrain never saw them
    assert tree["data/models/base"]["model"] == "trained_on"
    approx = by_path(location(report, "work tree")["erased_approximately"])
    assert list(approx) == [f"data/batches/{B}/unlearned"]
    assert "tru (approximate)" in approx[f"data/batches/{B}/unlearned"]["basis"]
    assert location(report, "work tree")["models_not_trained_on_them"] == 1
    # the DVC cache: an unnamed Parquet object, and a dataset folder's feature matrix read with
    # the item_map of its `.dir` listing
    cache = location(report, "dvc cache")["holding"]
    assert {e["format"] for e in cache} == {"parquet", "npy", "tsv"}
    assert all("object" in e for e in cache)
    assert next(e for e in cache if e["format"] == "npy")["rows"]["items"] == 1
    # the local remote; the S3 one is named, not silently skipped
    remote = location(report, "remote store")
    assert [e["format"] for e in remote["holding"]] == ["csv"]
    assert location(report, "remote s3")["not_scanned"] == "not scanned: s3"
    # the ledger is the record of requests, never a copy
    ledger = location(report, LEDGER_NAME)
    assert [e["path"] for e in ledger["record_of_requests"]] == [f"data/ledger/{B}/requests.parquet"]
    assert not any(path.startswith("data/ledger") for path in tree)
    assert tree["data/exports/requests-copy.parquet"]["rows"] == {"users": 1, "items": 1, "interactions": 1}
    assert [e["format"] for e in location(report, "dvc cache")["ledger_copies"]] == ["parquet"]
    assert report["holds_subjects"] is True
    assert report["totals"]["holding"] == len(tree) + len(cache) + 1
    assert "total: " in r.stdout and "hold the subjects" in r.stdout


def test_the_purged_tree_holds_nothing_and_exits_0(purged, monkeypatch):
    r = invoke(purged, monkeypatch, "--batch", B, "--out", "scan.json")
    assert r.exit_code == 0, r.output
    report = json.loads((purged / "scan.json").read_text())
    for loc in report["locations"]:
        assert loc.get("holding", []) == [], loc["location"]
        assert loc.get("erased_approximately", []) == [], loc["location"]
    assert report["holds_subjects"] is False
    # the same files were read: the base model was trained on a split that holds none of them
    assert location(report, "work tree")["models_not_trained_on_them"] == 3
    assert location(report, LEDGER_NAME)["record_of_requests"]  # the ledger keeps its record
    assert len(location(report, "dvc cache")["ledger_copies"]) == 1
    assert "total: nothing outside the ledger holds the subjects" in r.stdout


def test_no_raw_id_or_request_file_name_in_the_report_or_the_output(planted, monkeypatch):
    r = invoke(planted, monkeypatch, "--batch", B, "--out", "scan-ids.json")
    text = (planted / "scan-ids.json").read_text() + r.output
    for secret in SECRET_TEXT:
        assert secret not in text, secret
    assert "-zq" not in text


def test_a_subjects_file_finds_the_same_copies(planted, purged, monkeypatch, tmp_path):
    # the columns of a request file; kind may be left empty, other columns are ignored
    subjects = tmp_path / "subjects.csv"
    pd.DataFrame(
        {
            "kind": ["user", "", "interaction"],
            "user_id": [RAW_USERS[USER], "", RAW_USERS[PAIR[0]]],
            "item_id": ["", RAW_ITEMS[ITEM], RAW_ITEMS[PAIR_ITEM]],
            "note": ["a", "b", "c"],
        }
    ).to_csv(subjects, index=False)
    by_file = invoke(planted, monkeypatch, "--subjects", str(subjects), "--out", "by-file.json")
    by_batch = invoke(planted, monkeypatch, "--batch", B, "--out", "by-batch.json")
    assert by_file.exit_code == by_batch.exit_code == EXIT_FOUND
    a, b = (json.loads((planted / n).read_text()) for n in ("by-file.json", "by-batch.json"))
    assert a["subjects"]["resolved_to_indices"] == b["subjects"]["resolved_to_indices"]  # through the dataset's maps
    for name in ("work tree", "dvc cache", "remote store"):
        assert by_path(location(a, name)["holding"]).keys() == by_path(location(b, name)["holding"]).keys()
    # once purged, the maps no longer know the erased user and item: only files of raw ids can
    # be checked for them, and the summary says so
    r = invoke(purged, monkeypatch, "--subjects", str(subjects))
    assert r.exit_code == 0, r.output
    assert "note: 1 users, 1 items have no dataset index" in r.stdout


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--batch", "b20990101T000000Z"),
            f"error: no batch 'b20990101T000000Z' in the ledger data/ledger (known: {B})",
        ),
        (("--batch", "../b1"), "error: batch id '../b1' is not of the form bYYYYMMDDTHHMMSSZ"),
        ((), "error: name the subjects to look for: --batch B (repeatable) and/or --subjects FILE"),
        (("--subjects", "missing.csv"), "error: missing.csv: not found"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(planted, monkeypatch, args, message):
    r = invoke(planted, monkeypatch, *args, "--out", "never.json")
    assert r.exit_code == 2, r.output
    assert r.output.startswith(message), r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (planted / "never.json").exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("s.txt", "user_id\nx\n", "unsupported file type '.txt'"),
        ("s.csv", "kind,user_id,item_id\nuser,member-0001-zq,\n,,\n", "line 3: no user_id or item_id"),
        ("s.csv", "kind,user_id\nitem,member-0001-zq\n", "line 2: user_id must be empty for kind item"),
        ("s.csv", "kind,user_id\nuser, member-0001-zq \n", "line 2: user_id must be printable characters"),
        ("s.csv", "request_id,note\nr-1,x\n", "no user_id or item_id column"),
        ("s.jsonl", '{"kind": "user", "user_id": 42}\n', "line 1: user_id must be a string, not a number"),
        ("s.jsonl", '{"kind": "user", "user_id": "x"\n', "line 1: not valid JSON"),
        ("s.csv", "kind,user_id,item_id\n", "holds no subjects"),
    ],
)
def test_a_bad_subjects_file_names_file_and_line_and_no_id(planted, monkeypatch, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    r = invoke(planted, monkeypatch, "--subjects", str(path), "--out", "never.json")
    assert r.exit_code == 2, r.output
    assert r.output.startswith(f"error: {path}: ") and message in r.output, r.output
    assert "member-0001" not in r.output
    assert not (planted / "never.json").exists()


# ---------------------------------------------------------------------------------- formats


def subjects_by_index() -> Subjects:
    s = Subjects(users={"u-a"}, items={"i-b"}, pairs={("u-c", "i-d")}, dataset="tiny")
    s.user_index.update({"u-a": 5, "u-c": 6})
    s.item_index.update({"i-b": 2, "i-d": 3})
    return s


def match_of(data: bytes, name: str = "") -> dict:
    from tru.lifecycle.scan import Space

    s = subjects_by_index()
    m = assess(decode(Blob(name, data=data)), s, Space.of("t", s, s.user_index, s.item_index), None)
    return {k: m.rows[k] for k in ("users", "items", "interactions")}


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_formats_are_told_from_their_bytes_and_read_where_they_hold_ids():
    from safetensors.numpy import save

    pairs = np.array([[5, 1], [6, 3], [1, 2], [0, 0]], np.int64)
    assert sniff(npy(pairs)) == "npy" and sniff(b"PAR1xxxx") == "parquet" and sniff(b"[project]\n") == "json"
    assert match_of(npy(pairs)) == {"users": 1, "items": 1, "interactions": 1}
    assert match_of(npy(np.array([5, 5, 7])), "deleted_users.npy") == {"users": 2, "items": 0, "interactions": 0}
    assert match_of(npy(np.array([5, 5, 7]))) == {"users": 0, "items": 0, "interactions": 0}  # unnamed: no id list
    ids = save({"user_ids": np.array([5, 9], np.int64), "weight": np.zeros(3, np.float32)})
    assert sniff(ids) == "safetensors" and match_of(ids) == {"users": 1, "items": 0, "interactions": 0}
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pkg/data/x.inter", "user_id:token\titem_id:token\tts\nu-a\ti-b\t1\nu-c\ti-d\t2\nz\ty\t3\n")
        zf.writestr("pkg/readme.txt", "nothing here")
    assert match_of(archive.getvalue(), "wheel.whl") == {"users": 1, "items": 1, "interactions": 1}
    split_json = json.dumps({"counts": {"users": 5}, "deleted_users": [5, 1], "canary": {"raw_ids": ["u-a"]}})
    assert match_of(split_json.encode()) == {"users": 2, "items": 0, "interactions": 0}
    # a count is not an id: `users`/`items` alone, as a scalar or a column, name nothing
    assert match_of(json.dumps({"items": 2, "users": [5]}).encode()) == {"users": 0, "items": 0, "interactions": 0}
    assert match_of(b"method,users,items\ntru,5,2\n", "bench.csv") == {"users": 0, "items": 0, "interactions": 0}
    # TOML or a template that starts with a bracket is text, not an unreadable JSON file
    assert decode(Blob("", data=b"[project]\nname = 'x'\n")).error is None


def test_progress_is_a_line_every_n_files_without_a_terminal(planted, capsys):
    s = subjects_from_batches([B], planted)
    resolve_indices(s, planted, "data/datasets/tiny")
    report = scan(s, planted, progress=True, every=2, remotes=False)
    err = capsys.readouterr().err
    assert "scan: work tree: 2/" in err and "scan: dvc cache: 2/" in err
    lines = summary_lines(report)
    assert lines[-1].startswith("total: ") and any(line.startswith(f"{LEDGER_NAME} (") for line in lines)
    assert not any(loc["location"].startswith("remote") for loc in report["locations"])


def test_subjects_from_a_json_lines_request_file_match_the_ledger(planted, tmp_path):
    path = write_jsonl(tmp_path / "reqs.jsonl", requests()[:3])
    s, b = subjects_from_file(path), subjects_from_batches([B], planted)
    assert (s.users, s.items, s.pairs) == (b.users, b.items, b.pairs)
