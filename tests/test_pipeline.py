"""End to end: `dvc repro` of the stages on tiny synthetic data in a temporary git repo,
and the CLI's one-line errors on bad input."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import BIN, ROOT, copy_repo, ledger_status, run, tiny_params
from typer.testing import CliRunner

from tru.cli import app
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


def test_a_deletion_batch_through_ingest_sets_and_map(repo):
    tru = str(BIN / "tru")
    run([tru, "demo-requests", "data/deletions/inbox/demo.jsonl"], repo)
    out = run([tru, "ingest", "--batch-time", "2026-01-15T03:00:00+01:00"], repo)  # a fixed time: a fixed seed
    assert "rejected 3" in out  # the demo's three bad rows
    batches = yaml.safe_load((repo / "batches.yaml").read_text())["batches"]
    assert len(batches) == 1 and batches[0]["prior"] == "data/split"
    b = batches[0]["id"]
    assert b == "b20260115T020000Z"
    assert not list((repo / "data/deletions/inbox").iterdir())  # archived, never deleted
    assert list((repo / f"data/deletions/batches/{b}/input").iterdir())
    assert (repo / f"data/deletions/batches/{b}/input.dvc").is_file()
    run([str(BIN / "dvc"), "repro"], repo)
    comp = read_json(repo / f"reports/{b}/components.json")
    assert comp["counts"]["forget_interactions"] > 0 and comp["heat_map"]["modules"]
    sets = read_json(repo / f"data/batches/{b}/sets/split.json")
    assert sets["batch"]["targets"]["users"] >= 1 and sets["batch"]["targets"]["items"] == 3
    assert "up to date" in run([str(BIN / "dvc"), "status"], repo)
    # the audit gate passed: promoted, every accepted request erased, the canary's effect measured
    audit = read_json(repo / f"reports/{b}/audit.json")
    assert audit["verdict"] == "pass" and audit["promoted"]
    assert {c["name"] for c in audit["checks"]} == {
        "retain_recall_drop",
        "mia_balanced_accuracy",
        "forget_recall_ratio",
        "backdoor_lift",
    }
    assert audit["backdoor"]["enabled"] and audit["backdoor"]["deleted_by_this_batch"]
    assert set(audit["membership"]["models"]) == {"original", "unlearned"}
    # a tiny batch: the attack is measured and kept, but too few pairs for the gate to judge it
    mia = next(c for c in audit["checks"] if c["name"] == "mia_balanced_accuracy")
    least = yaml.safe_load((repo / "params.yaml").read_text())["audit"]["gate"]["min_mia_pairs"]
    assert audit["membership"]["sample_per_class"] < least and mia["passed"] is None and mia["value"] is not None
    assert "too few pairs" in mia["note"]
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
