"""End to end: `dvc repro` of the stages on tiny synthetic data in a temporary git repo,
and the CLI's one-line errors on bad input."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import BIN, ROOT, copy_repo, ledger_status, run, tiny_params, tool_env
from typer.testing import CliRunner

from tru.cli import app
from tru.data.dataset import load_split, read_pairs
from tru.io import read_json, sha256_file


@pytest.fixture(scope="module")
def repo(base_repo, tmp_path_factory):
    """A fresh project after `dvc repro` of the base stages (a copy of the session's)."""
    return copy_repo(base_repo, tmp_path_factory.mktemp("repo"))


def test_dvc_repro_runs_every_stage(repo):
    metrics = read_json(repo / "reports/train/metrics.json")
    for split in ("valid", "test"):
        assert set(metrics[split]) >= {"recall@10", "recall@20", "ndcg@10", "ndcg@20"}
        assert 0.0 <= metrics[split]["recall@20"] <= 1.0
    assert (repo / "data/models/base/model.safetensors").is_file()
    # training snapshotted every 2 epochs for resuming; the snapshot goes once the model is saved
    assert not (repo / "data/models/base.resume").exists()
    assert read_json(repo / "reports/train/train_log.json")["resumed_from_epoch"] == 0
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"fetch", "featurize", "split", "train", "evaluate"}
    status = run([str(BIN / "dvc"), "status"], repo)
    assert "up to date" in status


def test_the_committed_dvc_lock_matches_the_code_and_params():
    """The repository's own dvc.lock (what `make run` and an auditor's `dvc repro` start from)
    records the code and params its stages ran with: a change to tru/metrics.py without
    re-running `evaluate` once left the lock stale, unnoticed. Data is not here (fetched at
    run time), so only the code and params entries are compared."""
    import json

    status = json.loads(run([str(BIN / "dvc"), "status", "--json"], ROOT))
    stale = []
    for stage, entries in status.items():
        for entry in entries if isinstance(entries, list) else []:
            for path, state in (entry.get("changed deps") or {}).items() if isinstance(entry, dict) else []:
                if isinstance(state, dict):  # params: {"params.yaml": {"train.lr": "modified"}}
                    stale += [f"{stage}: {path}:{k} {v}" for k, v in state.items()]
                elif not path.startswith("data/"):
                    stale.append(f"{stage}: {path} {state}")
    assert not stale, "dvc.lock is stale (re-run the stages, commit dvc.lock): " + "; ".join(stale)


def test_forced_repro_gives_the_same_checkpoint_and_metrics(repo):
    before = sha256_file(repo / "data/models/base/model.safetensors")
    metrics_before = (repo / "reports/train/metrics.json").read_bytes()
    run([str(BIN / "dvc"), "repro", "--force", "--single-item", "train"], repo)
    run([str(BIN / "dvc"), "repro", "evaluate"], repo)
    assert sha256_file(repo / "data/models/base/model.safetensors") == before
    assert (repo / "reports/train/metrics.json").read_bytes() == metrics_before


@pytest.fixture(scope="module")
def demo_batch(repo):
    """The demo requests ingested as one batch and its stages run by `dvc repro`: the output of
    `tru ingest`."""
    tru = str(BIN / "tru")
    run([tru, "demo-requests", "data/deletions/inbox/demo.jsonl"], repo)
    out = run([tru, "ingest", "--batch-time", "2026-01-15T03:00:00+01:00"], repo)  # a fixed time: a fixed seed
    run([str(BIN / "dvc"), "repro"], repo)
    return out


def test_a_deletion_batch_through_ingest_sets_and_map(repo, demo_batch):
    tru = str(BIN / "tru")
    assert "rejected 3" in demo_batch  # the demo's three bad rows
    batches = yaml.safe_load((repo / "batches.yaml").read_text())["batches"]
    assert len(batches) == 1 and batches[0]["prior"] == "data/split"
    b = batches[0]["id"]
    assert b == "b20260115T020000Z"
    assert not list((repo / "data/deletions/inbox").iterdir())  # archived, never deleted
    assert list((repo / f"data/deletions/batches/{b}/input").iterdir())
    assert (repo / f"data/deletions/batches/{b}/input.dvc").is_file()
    comp = read_json(repo / f"reports/{b}/components.json")
    assert comp["counts"]["forget_interactions"] > 0 and comp["heat_map"]["modules"]
    sets = read_json(repo / f"data/batches/{b}/sets/split.json")
    assert sets["batch"]["targets"]["users"] >= 1 and sets["batch"]["targets"]["items"] == 3
    assert "up to date" in run([str(BIN / "dvc"), "status"], repo)
    # the audit gate promoted the model, every accepted request erased, the canary's effect measured
    audit = read_json(repo / f"reports/{b}/audit.json")
    checks = {c["name"]: c for c in audit["checks"]}
    assert set(checks) == {
        "retain_recall_drop",
        "membership_vs_shadow",
        "item_residue",
        "backdoor_lift",
        "forget_recall_ratio",
    }
    # PASS needs an erasure check that passed with power (it fails the original model); without
    # one the verdict stays INCONCLUSIVE, promoted under params.yaml's `inconclusive: pass` (a
    # 3-epoch model on 80 users rarely gives its checks power)
    with_power = [n for n, c in checks.items() if c["kind"] == "erasure" and c["passed"] and c["power"]]
    assert audit["verdict"] == ("pass" if with_power else "inconclusive") and audit["failed"] == []
    assert audit["promoted"] and audit["policy"] == "pass"
    for c in checks.values():
        assert c["judged"] == (c["passed"] is not None)
        assert ("power" in c) == (c["kind"] == "erasure")  # utility has no power to show
        if not c["judged"]:
            assert c["note"] and c.get("power") is None  # why it was not judged
    # the membership test: forgotten pairs against never-trained shadow pairs of the same users
    shadow = audit["shadow_membership"]["unlearned"]
    assert shadow["members"] > 0 and shadow["non_members"] > 0
    assert checks["membership_vs_shadow"]["judged"] and checks["membership_vs_shadow"]["value"] == shadow["auc"]
    assert checks["membership_vs_shadow"]["original"] == shadow["original_auc"]
    # the chain's membership check (not part of the gate): on the first batch, the interactions
    # it erased for users and items still in service, against those users' shadow pairs
    sets_data = load_split(repo / f"data/batches/{b}/sets", repo / sets["dataset_dir"])
    forget = read_pairs(repo / f"data/batches/{b}/sets/forget.parquet")
    own = ~np.isin(forget[:, 0], sets_data.deleted_users) & ~np.isin(forget[:, 1], sets_data.deleted_items)
    chain = audit["chain"]
    assert chain["pairs"] == int(own.sum()) > 0 and chain["members"] <= chain["pairs"]
    assert chain["verdict"] in {"residue", "clean", "no power"} and chain["flagged"] == (chain["verdict"] == "residue")
    # the batch deletes the canary: its lift is judged, the original's beside it
    assert checks["backdoor_lift"]["judged"] and checks["backdoor_lift"]["original"] is not None
    assert audit["backdoor"]["enabled"] and audit["backdoor"]["deleted_by_this_batch"]
    # reported, never judged: the forget ratio, and the classifier attack (in "membership")
    assert checks["forget_recall_ratio"]["value"] is not None and not checks["forget_recall_ratio"]["judged"]
    assert set(audit["membership"]["models"]) == {"original", "unlearned"}
    status = ledger_status(repo, b)
    assert set(status["status"]) == {"erased", "rejected"} and (status["status"] == "erased").sum() > 10
    assert "current model: data/batches/" + b + "/model" in run([tru, "status"], repo)
    # an empty inbox: nothing to ingest, nothing to reproduce
    assert "inbox empty" in run([tru, "ingest"], repo)
    # a batch time not after the last batch's (a clock set back) is refused before anything is written
    (repo / "data/deletions/inbox/late.jsonl").write_text(
        '{"request_id": "late-1", "kind": "item", "item_id": "1", "received_at": "2026-01-10T00:00:00Z"}\n'
    )
    registry = (repo / "batches.yaml").read_bytes()
    for when in ("2026-01-15T02:00:00Z", "2026-01-14T23:59:59Z"):
        out = run([tru, "ingest", "--batch-time", when], repo, expect=2)
        assert f"not newer than the last batch {b}" in out and "nothing ingested" in out
    assert "not an ISO-8601 time" in run([tru, "ingest", "--batch-time", "tomorrow"], repo, expect=2)
    assert (repo / "batches.yaml").read_bytes() == registry
    assert (repo / "data/deletions/inbox/late.jsonl").is_file()
    assert sorted(p.name for p in (repo / "data/ledger").iterdir() if p.is_dir()) == [b]
    (repo / "data/deletions/inbox/late.jsonl").unlink()
    assert "Data and pipelines are up to date" in run([str(BIN / "dvc"), "repro"], repo) or "didn't change" in run(
        [str(BIN / "dvc"), "repro"], repo
    )


def _id_sets(obj):
    """Every group of ids a JSON value could list: the integers of a list (directly, or as the
    `item`/`user` of its mappings) and the integer keys of a mapping."""
    if isinstance(obj, dict):
        keys = {int(k) for k in obj if str(k).isdigit()}
        if keys:
            yield keys
        for v in obj.values():
            yield from _id_sets(v)
    elif isinstance(obj, list):
        ids = {v for v in obj if isinstance(v, int) and not isinstance(v, bool)}
        ids |= {e[k] for e in obj if isinstance(e, dict) for k in ("item", "user") if isinstance(e.get(k), int)}
        if ids:
            yield ids
        for v in obj:
            yield from _id_sets(v)


def test_what_a_batch_commits_names_no_erased_data(repo, demo_batch):
    """Everything the batch adds to git (its reports, dvc.lock, batches.yaml, DVC's pointers)
    and every file under reports/<batch>/ (the evidence PDF) holds no raw id of the requests, no
    request id, no request file name and no erased user's item list, by raw id or by index: git
    and the evidence keep them long after the erasure."""
    from pypdf import PdfReader

    b = yaml.safe_load((repo / "batches.yaml").read_text())["batches"][0]["id"]
    requests = pd.read_json(repo / f"data/deletions/batches/{b}/input/demo.jsonl", lines=True, dtype=False)
    status = ledger_status(repo, b).merge(requests, on="request_id")
    erased = status[(status["status"] == "erased") & (status["kind"] == "user")]["user_id"].tolist()
    assert len(erased) >= 2 and any(u.startswith("canary-") for u in erased)
    users = pd.read_csv(repo / "data/datasets/tiny/user_map.tsv", sep="\t", dtype={"raw_id": str})
    items = pd.read_csv(repo / "data/datasets/tiny/item_map.tsv", sep="\t", dtype={"raw_id": str})
    fake = read_json(repo / "data/split/split.json")["canary"]
    index = dict(zip(users["raw_id"], users["userID"])) | dict(zip(fake["raw_ids"], fake["fake_users"]))
    train = pd.read_parquet(repo / "data/split/train.parquet")
    histories = [set(train.loc[train["user"] == index[u], "item"].tolist()) for u in erased]
    assert all(len(h) >= 2 for h in histories)
    raw_items = dict(zip(items["itemID"], items["raw_id"]))
    secrets = set(requests["request_id"]) | {"demo.jsonl"}
    secrets |= {v for c in ("user_id", "item_id") for v in requests[c].dropna()}
    secrets |= {raw_items[i] for h in histories for i in h}

    committed = run(["git", "ls-files", "--modified", "--others", "--exclude-standard"], repo).split()
    assert f"reports/{b}/components.json" in committed and "dvc.lock" in committed
    assert f"data/deletions/batches/{b}/input.dvc" in committed
    written = [p.relative_to(repo).as_posix() for p in (repo / "reports" / b).rglob("*") if p.is_file()]
    assert f"reports/{b}/evidence.pdf" in written  # versioned by DVC, not git: shown to auditors
    for path in sorted(set(committed) | set(written)):
        data = (repo / path).read_bytes()
        if path.endswith(".pdf"):
            text = "".join(page.extract_text() or "" for page in PdfReader(repo / path).pages)
            text = text.replace("\x00", "").replace("\n", "")
        else:
            text = data.decode("utf-8")
        leaked = sorted(t for t in secrets if t in text)
        assert not leaked, f"{path} names {leaked}"
        if path.startswith(f"reports/{b}/") and path.endswith(".json"):
            for ids in _id_sets(json.loads(text)):
                assert not any(h <= ids for h in histories), f"{path} lists an erased user's items"


# --- bad input: one clear line, non-zero exit, nothing half-written ----------------------

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def mmrec_folder(d: Path, n_items=6, feat_rows=None, drop=None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    inter = pd.DataFrame(
        {
            "userID": [0, 0, 1, 1, 2],
            "itemID": [0, 1, 1, 2, 3],
            "rating": [5, 4, 5, 4, 5],
            "timestamp": [1, 2, 3, 4, 5],
            "x_label": [0, 2, 0, 1, 0],
        }
    )
    if drop:
        inter = inter.drop(columns=[drop])
    inter.to_csv(d / "mini.inter", sep="\t", index=False)
    np.save(d / "text_feat.npy", np.ones((feat_rows or n_items, 3), dtype=np.float32))
    return d


def test_feature_row_count_mismatch_is_one_clear_line(tmp_path, params):
    ds = mmrec_folder(tmp_path / "ds")
    np.save(ds / "image_feat.npy", np.ones((5, 2), dtype=np.float32))
    res = invoke("split", "--params", ROOT / "params.yaml", "--dataset", ds, "--out", tmp_path / "split")
    assert res.exit_code != 0
    assert res.output.strip().count("\n") == 0 and "image_feat.npy has 5 rows" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "split").exists()


def test_inter_missing_column_is_named(tmp_path):
    ds = mmrec_folder(tmp_path / "ds", drop="timestamp")
    res = invoke("split", "--params", ROOT / "params.yaml", "--dataset", ds, "--out", tmp_path / "split")
    assert res.exit_code != 0 and "missing column(s) timestamp" in res.output and "mini.inter" in res.output
    assert not (tmp_path / "split").exists()


def test_missing_feature_file_and_folder(tmp_path):
    ds = mmrec_folder(tmp_path / "ds")
    (ds / "text_feat.npy").unlink()
    res = invoke("split", "--params", ROOT / "params.yaml", "--dataset", ds, "--out", tmp_path / "split")
    assert res.exit_code != 0 and "no *_feat.npy" in res.output
    res = invoke("split", "--params", ROOT / "params.yaml", "--dataset", tmp_path / "nope", "--out", tmp_path / "split")
    assert res.exit_code != 0 and "dataset folder not found" in res.output


def test_mmrec_x_label_split_used_as_given(tmp_path):
    ds = mmrec_folder(tmp_path / "ds")
    res = invoke("split", "--params", ROOT / "params.yaml", "--dataset", ds, "--out", tmp_path / "split")
    assert res.exit_code == 0, res.output
    meta = read_json(tmp_path / "split" / "split.json")
    assert meta["n_items"] == 6  # from the feature rows, not the largest itemID (3)
    canary_rows = meta["canary"]["rows"] if "canary" in meta else 0  # the backdoor canary joins train only
    assert meta["counts"]["train"] == 3 + canary_rows and meta["counts"]["valid"] == 1 and meta["counts"]["test"] == 1


# --- your own MMRec folder: a DVC dependency; switching datasets ---------------------------


def mmrec_repo(root: Path, source: Path) -> Path:
    """A project repository (git + DVC, nothing run) whose data is the MMRec folder `source`,
    imported under data/mmrec/ as docs/data.md says."""
    root.mkdir(parents=True)
    for name in ("dvc.yaml", ".dvcignore", ".gitignore", "data/mmrec/.gitignore", "lifecycle/suppression.tsv"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes((ROOT / name).read_bytes())
    (root / "batches.yaml").write_text("batches: []\n")
    shutil.copytree(ROOT / "tru", root / "tru", ignore=shutil.ignore_patterns("__pycache__"))
    tiny_params(root)
    p = yaml.safe_load((root / "params.yaml").read_text())
    p["data"] = {"source": "mmrec", "name": "mini", "mmrec_dir": "data/mmrec/mini", "dataset_dir": "data/datasets/mini"}
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    run(["git", "init", "-q"], root)
    run([str(BIN / "dvc"), "init", "-q"], root)
    run([str(BIN / "dvc"), "import-url", str(source), "data/mmrec/mini"], root)
    return root


def test_a_changed_mmrec_folder_reruns_fetch(tmp_path):
    """The folder is imported with `dvc import-url`; a change to it, taken in by `dvc update`,
    makes DVC see the fetch stage as changed, and `dvc repro` rebuilds the dataset from it."""
    source = mmrec_folder(tmp_path / "outside" / "mini")
    repo = mmrec_repo(tmp_path / "repo", source)
    dvc = str(BIN / "dvc")
    run([dvc, "repro", "split"], repo)
    assert "up to date" in run([dvc, "status", "--with-deps", "split"], repo)
    recorded = read_json(repo / "data/raw/fetch.json")["files"]
    assert recorded["mini.inter"] == sha256_file(source / "mini.inter")

    inter = pd.read_csv(source / "mini.inter", sep="\t")
    inter.loc[0, "rating"] = 1
    inter.to_csv(source / "mini.inter", sep="\t", index=False)
    run([dvc, "update", "data/mmrec/mini.dvc"], repo)
    status = run([dvc, "status", "--with-deps", "split"], repo)
    assert "fetch:" in status and "data/mmrec" in status
    run([dvc, "repro", "split"], repo)
    copied = pd.read_csv(repo / "data/datasets/mini/mini.inter", sep="\t")
    assert copied.loc[0, "rating"] == 1
    assert "up to date" in run([dvc, "status", "--with-deps", "split"], repo)


def test_mmrec_folder_outside_data_mmrec_is_refused(tmp_path, monkeypatch):
    """The pipeline's fetch takes no folder DVC does not hash; the benchmarks' may lie anywhere,
    and the dataset is never built from a folder changed since fetch recorded it."""
    from tru.config import load_params
    from tru.errors import DataError
    from tru.stages.data import featurize_stage, fetch_stage

    ds = mmrec_folder(tmp_path / "elsewhere" / "mini")
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["data"] = {"source": "mmrec", "name": "mini", "mmrec_dir": str(ds), "dataset_dir": "data/datasets/mini"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    work = tmp_path / "project"
    work.mkdir()
    monkeypatch.chdir(work)
    res = invoke("fetch", "--params", tmp_path / "params.yaml", "--out", "data/raw")
    assert res.exit_code == 2, res.output
    assert f"data.mmrec_dir {ds} is outside data/mmrec/" in res.output and "dvc import-url" in res.output
    assert not (work / "data/raw").exists()

    params = load_params(tmp_path / "params.yaml")
    fetch_stage(params, tmp_path / "raw")  # not the pipeline's raw folder: anywhere is fine
    (ds / "text_feat.npy").write_bytes((ds / "text_feat.npy").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(DataError, match=r"changed since `tru fetch` recorded it .*\(text_feat\.npy\)"):
        featurize_stage(params, tmp_path / "raw", tmp_path / "dataset")
    assert not (tmp_path / "dataset").exists()


def new_data(root: Path) -> None:
    """params.yaml of the repository at `root` switched to another synthetic dataset."""
    p = yaml.safe_load((root / "params.yaml").read_text())
    p["data"].update({"name": "tiny2", "dataset_dir": "data/datasets/tiny2"})
    p["synthetic"].update({"n_users": 90, "n_interactions": 1800})
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


def test_switching_datasets_under_registered_batches_is_refused(repo, demo_batch, tmp_path):
    """Its requests name the old dataset's ids: neither a new batch nor a rebuild of the old
    one may run on the new data; the old settings and data come back from the last commit."""
    switched = copy_repo(repo, tmp_path / "switched")
    run(["git", "add", "-A"], switched)
    run(["git", "commit", "-qm", "batch"], switched)
    b = yaml.safe_load((switched / "batches.yaml").read_text())["batches"][0]["id"]
    new_data(switched)
    run([str(BIN / "dvc"), "repro", "split"], switched)
    (switched / "data/deletions/inbox/more.jsonl").write_text(
        '{"request_id": "r-1", "kind": "item", "item_id": "i00001", "received_at": "2026-02-01T00:00:00Z"}\n'
    )
    out = run([str(BIN / "tru"), "ingest", "--batch-time", "2026-02-01T02:00:00Z"], switched, expect=2)
    assert f"batch {b} was ingested against dataset tiny (data/datasets/tiny, sha256 " in out
    assert "but the data is now tiny2 (data/datasets/tiny2" in out and "nothing ingested" in out
    assert "Switching datasets once batches exist" in out
    assert len(yaml.safe_load((switched / "batches.yaml").read_text())["batches"]) == 1
    out = run([str(BIN / "dvc"), "repro", "sets@0"], switched, expect=255)
    assert f"batch {b} was ingested against dataset tiny" in out and "its sets are not rebuilt from data/split" in out
    run(["git", "checkout", "params.yaml", "dvc.lock"], switched)
    run([str(BIN / "dvc"), "checkout"], switched)
    assert "up to date" in run([str(BIN / "dvc"), "status"], switched)


def test_switching_datasets_in_a_new_workspace(repo, demo_batch, tmp_path):
    """The procedure of docs/data.md: the old workspace committed as the record of its batches,
    a clone, an empty batch registry and the batches' pointers removed, then the new data."""
    old = copy_repo(repo, tmp_path / "old")
    run(["git", "add", "-A"], old)
    run(["git", "commit", "-qm", "batch"], old)
    new = tmp_path / "new"
    run(["git", "clone", "-q", str(old), str(new)], tmp_path)
    b = yaml.safe_load((new / "batches.yaml").read_text())["batches"][0]["id"]
    (new / "batches.yaml").write_text("batches: []\n")
    for path in ("data/deletions/batches", "data/ledger", "data/batches", f"reports/{b}"):
        run(["git", "rm", "-rq", "--ignore-unmatch", path], new)
    assert not [f for f in run(["git", "ls-files"], new).split() if b in f]
    new_data(new)
    run([str(BIN / "dvc"), "repro"], new)
    assert "up to date" in run([str(BIN / "dvc"), "status"], new)
    assert read_json(new / "data/split/split.json")["name"] == "tiny2"
    # the first batch of the new dataset: its ids resolve, it starts from the new base model
    users = pd.read_csv(new / "data/datasets/tiny2/user_map.tsv", sep="\t", dtype={"raw_id": str})
    user = users["raw_id"][0]
    request = {"request_id": "r-1", "kind": "user", "user_id": user, "received_at": "2026-02-01T00:00:00Z"}
    (new / "data/deletions/inbox").mkdir(parents=True)
    (new / "data/deletions/inbox/first.jsonl").write_text(json.dumps(request) + "\n")
    run([str(BIN / "tru"), "ingest", "--batch-time", "2026-02-01T02:00:00Z"], new)
    entry = yaml.safe_load((new / "batches.yaml").read_text())["batches"]
    assert [e["prior"] for e in entry] == ["data/split"] and entry[0]["base_model"] == "data/models/base"
    assert ledger_status(new, entry[0]["id"])["status"].tolist() == ["accepted"]


def test_unknown_params_key_exits_with_its_name(tmp_path):
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["train"]["epochz"] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    res = invoke("split", "--params", tmp_path / "params.yaml", "--dataset", tmp_path)
    assert res.exit_code != 0 and "unknown key 'train.epochz'" in res.output


def test_prefect_flow_writes_the_same_artifacts_as_dvc(repo, harness, tmp_path, monkeypatch):
    """One implementation of each step: the Prefect flow and `dvc repro` give identical files."""
    from flows.train import base_training

    tiny_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    hashes = base_training(str(tmp_path / "params.yaml"))
    assert hashes["checkpoint"] == sha256_file(repo / "data/models/base/model.safetensors")
    assert (tmp_path / "reports/train/metrics.json").read_bytes() == (repo / "reports/train/metrics.json").read_bytes()
    assert (tmp_path / "data/split/train.parquet").read_bytes() == (repo / "data/split/train.parquet").read_bytes()


def test_another_pseudonymisation_key_stops_ingest(repo, demo_batch, tmp_path):
    """The ledger records the key's fingerprint per batch: with another key the same person
    would get another pseudonym, so ingest stops, saying so, and the requests wait."""
    other = copy_repo(repo, tmp_path / "otherkey")
    b = yaml.safe_load((other / "batches.yaml").read_text())["batches"][0]["id"]
    from tru.requests.ledger import batch_metadata
    from tru.requests.pseudonym import key_fingerprint

    recorded = batch_metadata(other / "data/ledger", b)["pseudonym_key"]
    assert recorded == key_fingerprint(bytes.fromhex(tool_env()["TRU_PSEUDONYM_KEY"]))
    inbox = other / "data/deletions/inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "more.jsonl").write_text(
        '{"request_id": "r-1", "kind": "item", "item_id": "i00001", "received_at": "2026-02-01T00:00:00Z"}\n'
    )
    res = subprocess.run(
        [str(BIN / "tru"), "ingest", "--batch-time", "2026-02-01T02:00:00Z"],
        cwd=other,
        env=tool_env(TRU_PSEUDONYM_KEY="ff" * 32),
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"the pseudonymisation key is not the one batch {b} was ingested with (fingerprint {recorded[:16]}…" in (
        res.stderr
    )
    assert (inbox / "more.jsonl").is_file() and len(
        yaml.safe_load((other / "batches.yaml").read_text())["batches"]
    ) == 1
