"""The data lifecycle end to end on tiny data: after a demo batch through `tru nightly`, whose
policy (lifecycle.consolidate_when) starts a consolidation, the base model is retrained on
data without the erased subjects and the batch archived, and `tru purge` (a zero-day window)
removes what held them from the work tree, the DVC cache and a local DVC remote. The scan
finds the subjects before the purge (it has power) and nothing after it."""

import json
import os
import signal
import subprocess
import time

import pandas as pd
import pytest
import yaml

from tests.conftest import BIN, copy_repo, run, tool_env
from tru.io import read_json

BATCH_TIME = "2026-01-15T03:00:00+01:00"


def tru(repo, *args, expect=0):
    return run([str(BIN / "tru"), *args], repo, expect=expect)


def scan_report(repo, root, name, expect):
    tru(repo, "scan", "--subjects", str(root / "subjects.csv"), "--out", str(root / name), expect=expect)
    return read_json(root / name)


def holding(report, kind):
    return sum(len(loc.get("holding", [])) for loc in report["locations"] if loc["kind"] == kind)


def kill_when(repo, args, ready, after=0.0, deadline_s=300, env=None):
    """Run `tru ARGS` and SIGKILL it (its whole process group) `after` seconds once `ready()`
    holds; whether it was killed before it finished."""
    proc = subprocess.Popen(
        [str(BIN / "tru"), *args],
        cwd=repo,
        env=tool_env(**(env or {})),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    killed, deadline = False, time.monotonic() + deadline_s
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if ready():
                time.sleep(after)
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and not killed:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return killed


@pytest.fixture(scope="module")
def consolidated(base_repo, tmp_path_factory, harness):
    """A project with a local DVC remote whose policy consolidates after every batch: the demo
    batch through `tru nightly`, which records the batch, then starts the consolidation by
    itself. Killed (SIGKILL) once the consolidation's record, the suppression list and the
    archive are written, while DVC rebuilds the data and retrains; `tru consolidate` resumes it
    and loses nothing. The subjects' raw ids are kept outside the repository, as an auditor
    would, to scan for."""
    root = tmp_path_factory.mktemp("lifecycle")
    repo = copy_repo(base_repo, root / "repo")
    run([str(BIN / "dvc"), "remote", "add", "-d", "store", str(root / "remote")], repo)
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["lifecycle"] = {"retention_days": 0, "consolidate_when": {"batches": 1, "erased_user_share": 0, "retain_drop": 0}}
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    run(["git", "commit", "-qam", "a zero-day window; consolidate after every batch"], repo)
    tru(repo, "demo-requests", "data/deletions/inbox/demo.jsonl")
    gens_file = repo / "lifecycle/generations.yaml"

    def started_and_archived():
        archived = "batches: []" in (repo / "batches.yaml").read_text()
        return gens_file.is_file() and "state: started" in gens_file.read_text() and archived

    env = {"PREFECT_API_URL": harness}
    nightly = ["nightly", "--batch-time", BATCH_TIME]
    killed = kill_when(repo, nightly, started_and_archived, after=0.5, deadline_s=900, env=env)
    assert killed, "the nightly run's consolidation finished before it could be killed"
    (entry,) = yaml.safe_load(gens_file.read_text())["generations"]
    assert entry["state"] == "started"
    (batch,) = entry["batches"]
    assert len(pd.read_csv(repo / "lifecycle/suppression.tsv", sep="\t")) > 0
    led = pd.read_parquet(repo / "data/ledger" / batch / "requests.parquet")
    led[led["status"] != "rejected"][["kind", "user_id", "item_id"]].to_csv(root / "subjects.csv", index=False)
    # the batch's lineage was committed before the consolidation began: dvc.lock as it recorded it
    lock_before = yaml.safe_load(run(["git", "show", "HEAD:dvc.lock"], repo))
    assert "report@0" in lock_before["stages"]
    before = scan_report(repo, root, "before.json", expect=6)
    out = tru(repo, "consolidate")
    assert "resuming the consolidation into generation 1" in out
    return repo, batch, root, before, lock_before, out


def test_the_scan_has_power_before_anything_is_purged(consolidated):
    *_, before, _, _ = consolidated
    assert before["holds_subjects"]
    for kind in ("work tree", "dvc cache", "remote"):
        assert holding(before, kind) > 0, kind


def test_consolidation_archives_the_batch_and_retrains_without_the_subjects(consolidated):
    repo, batch, root, _, lock_before, out = consolidated
    assert "data generation 1 in service" in out
    gens = yaml.safe_load((repo / "lifecycle/generations.yaml").read_text())["generations"]
    (g,) = gens
    assert g["generation"] == 1 and g["state"] == "done" and g["batches"] == [batch]
    assert g["previous_model"] == f"data/batches/{batch}/model" and g["model"] == "data/models/base"
    assert 0 <= g["test_recall@20"] <= 1 and g["seconds"] > 0
    # the batch left batches.yaml and dvc.lock; dvc.lock as it was is kept for the window
    assert yaml.safe_load((repo / "batches.yaml").read_text())["batches"] == []
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"fetch", "featurize", "split", "train", "evaluate"}
    assert yaml.safe_load((repo / "lifecycle/locks/generation-0.dvc.lock").read_text()) == lock_before
    # every stage of the base lineage reran on the redacted data: a new model
    for stage in ("featurize", "split", "train"):
        assert lock["stages"][stage]["outs"] != lock_before["stages"][stage]["outs"], stage
    sup = pd.read_csv(repo / "lifecycle/suppression.tsv", sep="\t")
    accepted = pd.read_csv(root / "subjects.csv")
    assert set(sup["generation"]) == {1} and 0 < len(sup) <= len(accepted)
    manifest = read_json(repo / "data/datasets/tiny/manifest.json")
    assert manifest["redaction"]["generation"] == 1 and manifest["redaction"]["removed"]["interactions"] > 0
    # the new split plants a canary of its own (the erased one's ids are not planted again)
    canary = read_json(repo / "data/split/split.json")["canary"]
    assert all(r.startswith("canary-g1-") for r in canary["raw_ids"])
    # the model in service is the new base; the lineage is committed
    status = tru(repo, "status")
    assert "data generation 1" in status and "generation 0 in retention" in status
    # a person asking about their request is told where its data is today
    where = tru(repo, "evidence", "get", "demo-canary-0000")
    assert "left out of the data since generation 1" in where and "kept for audit until" in where
    assert (
        run(["git", "status", "--porcelain", "--", "lifecycle", "batches.yaml", "dvc.lock", "reports/train"], repo)
        == ""
    )
    assert run([str(BIN / "dvc"), "status"], repo).strip().endswith("up to date.") or "up to date" in run(
        [str(BIN / "dvc"), "status"], repo
    )


def test_before_the_purge_the_generation_in_retention_still_holds_them(consolidated):
    repo, _, root, *_ = consolidated
    mid = scan_report(repo, root, "mid.json", expect=6)
    # the data in service does not: only the archived batch, the cache and the remote
    tree = next(loc for loc in mid["locations"] if loc["kind"] == "work tree")
    paths = [e.get("path", "") for e in tree["holding"]]
    assert paths and all(p.startswith(("data/batches/", "data/deletions/batches/")) for p in paths), paths
    assert holding(mid, "dvc cache") > 0 and holding(mid, "remote") > 0
    # by batch: the ledger's indices belong to generation 0; the renumbered data in service is not mistaken for it
    batch = consolidated[1]
    tru(repo, "scan", "--batch", batch, "--out", str(root / "mid-batch.json"), expect=6)
    tree = next(loc for loc in read_json(root / "mid-batch.json")["locations"] if loc["kind"] == "work tree")
    paths = [e.get("path", "") for e in tree["holding"]]
    assert all(p.startswith(("data/batches/", "data/deletions/batches/")) for p in paths), paths


@pytest.fixture(scope="module")
def purged(consolidated):
    repo, batch, root, *_ = consolidated
    # killed (SIGKILL) once its plan is written and the batch's folders are gone, while objects
    # go and the verification scans: run again, it resumes from the plan, the ledger still gives
    # the subjects to verify with, and it ends as an uninterrupted purge would
    plan = repo / "lifecycle/purge-plan.json"
    killed = kill_when(repo, ["purge"], lambda: plan.is_file() and not (repo / "data/batches" / batch).exists())
    assert killed, "the purge finished before it could be killed"
    assert plan.is_file() and not (repo / "lifecycle/tombstones.jsonl").exists()
    led = pd.read_parquet(repo / "data/ledger" / batch / "requests.parquet")
    assert led["user_id"].notna().any()  # the ledger is redacted last
    out = tru(repo, "purge")
    assert "resuming the purge planned at" in out
    return repo, batch, root, out


def test_after_the_purge_nothing_holds_them_anywhere(purged):
    repo, batch, root, out = purged
    assert "purged" in out
    after = scan_report(repo, root, "after.json", expect=0)
    assert not after["holds_subjects"]
    assert all(holding(after, k) == 0 for k in ("work tree", "dvc cache", "remote"))
    # the ledger keeps what was asked and what became of it, without raw ids or reasons
    led = pd.read_parquet(repo / "data/ledger" / batch / "requests.parquet")
    assert led["user_id"].isna().all() and led["item_id"].isna().all() and led["request_reason"].isna().all()
    assert led["subject"].notna().any() and set(led["status"]) >= {"accepted"}
    assert not (repo / "data/batches" / batch).exists() and not (repo / "data/deletions/batches" / batch).exists()
    # committed: the removals and the ledger's new pointer
    assert run(["git", "status", "--porcelain", "--", "data", "lifecycle"], repo) == ""


def test_the_purge_certificate_names_every_object_and_its_verification(purged):
    repo, batch, *_ = purged
    facts = read_json(repo / "reports/lifecycle/purge-generation-0.json")
    stones = [json.loads(line) for line in (repo / "lifecycle/tombstones.jsonl").read_text().splitlines()]
    assert sorted(o["object"] for o in facts["objects"]) == sorted(s["object"] for s in stones)
    assert facts["verified"] is True and facts["verification_label"] == "VERIFIED"
    assert set(facts["scan"]["holding"].values()) == {0}
    assert facts["batches"][0]["id"] == batch and len(facts["batches"][0]["pdf_sha256"]) == 64
    pdf = (repo / "reports/lifecycle/purge-generation-0.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-")
    # no machine path and no raw id in what a person outside the ledger reads
    text = json.dumps(facts)
    assert str(repo) not in text and "/tmp" not in text
    subjects = pd.read_csv(repo.parent / "subjects.csv", dtype=str)
    raw = {v for v in pd.concat([subjects["user_id"], subjects["item_id"]]).dropna() if len(v) > 3}
    assert not any(f'"{v}"' in text for v in raw)


def test_every_removed_object_has_a_tombstone_and_the_generation_says_purged(purged):
    repo, *_ = purged
    stones = [json.loads(line) for line in (repo / "lifecycle/tombstones.jsonl").read_text().splitlines()]
    assert stones and all(s["generation"] == 0 and s["why"] and s["removed_from"] for s in stones)
    objects = {s["object"] for s in stones}
    assert len(objects) == len(stones)
    g = yaml.safe_load((repo / "lifecycle/generations.yaml").read_text())["generations"][0]
    assert g["purged_objects"] == len(stones) and g["purged_at"]
    # nothing the lineage in service names was removed
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    in_service = {o["md5"] for s in lock["stages"].values() for o in s.get("outs", [])}
    assert not in_service & objects
    assert "generation 0: purged" in tru(repo, "status")
    where = tru(repo, "evidence", "get", "demo-canary-0000")
    assert f"purged {g['purged_at'][:10]}: {len(stones)} object(s)" in where
    assert "raw ids and reasons dropped at the purge" in where
    # a second purge has nothing to do
    assert "nothing to purge" in tru(repo, "purge")


def test_a_fresh_clone_reproduces_the_consolidated_lineage_from_the_remote(purged, tmp_path):
    repo, *_ = purged
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    # the remote's url is the same folder; the clone has no cache of its own
    run([str(BIN / "dvc"), "pull", "-q"], clone)
    status = run([str(BIN / "dvc"), "status"], clone)
    assert "up to date" in status, status
    res = subprocess.run(
        [str(BIN / "dvc"), "repro", "--force", "--single-item", "train"],
        cwd=clone,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr

    def model(root):  # the checkpoint (the training log beside it records wall-clock seconds)
        outs = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["train"]["outs"]
        return next(o["md5"] for o in outs if o["path"] == "data/models/base")

    assert model(clone) == model(repo)
    assert os.path.isfile(clone / "data/models/base/model.safetensors")
