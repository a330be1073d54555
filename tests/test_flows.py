"""The nightly erasure flow (flows/erasure.py) on tiny synthetic data in a temporary git + DVC
repository: inbox -> PDF under prefect_test_harness, the empty inbox, the run lock, a SIGKILL
in the middle of the update, the audit gate's failure, the fresh-clone `dvc repro --force`
byte-identity (the deployment and the Dask runner: tests/test_deployment.py).

The tests share one repository and run in order (each batch starts where the last ended)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import BIN, HELD_FOR_REVIEW, copy_repo, run
from conftest import ledger_status as ledger
from conftest import tool_env as env

from tru.io import read_json, sha256_file


@pytest.fixture(scope="module")
def repo(base_repo, tmp_path_factory):
    """A project with a trained base model, committed; no deletion batch yet. Its default DVC
    remote is a folder beside it (`../store`, committed in .dvc/config), as in the project."""
    d = copy_repo(base_repo, tmp_path_factory.mktemp("flowrepo"))
    run([str(BIN / "dvc"), "remote", "add", "-d", "store", "../store"], d)
    run(["git", "commit", "-qam", "the DVC remote"], d)
    return d


def flow_run(repo: Path, monkeypatch, **kwargs):
    """erasure_batch in this process (cwd = the repository); returns its final state."""
    from flows.erasure import erasure_batch

    monkeypatch.chdir(repo)
    for k, v in env().items():
        monkeypatch.setenv(k, v)
    return erasure_batch(return_state=True, **kwargs)


def lock_stages(repo: Path) -> dict:
    """dvc.lock's stages, read while another process may be rewriting it (then: none yet)."""
    try:
        return (yaml.safe_load((repo / "dvc.lock").read_text()) or {}).get("stages") or {}
    except (OSError, yaml.YAMLError):
        return {}


def batches_of(repo: Path) -> list[dict]:
    return yaml.safe_load((repo / "batches.yaml").read_text())["batches"] or []


def dvc_status(repo: Path) -> str:
    return run([str(BIN / "dvc"), "status"], repo)


def snapshot(repo: Path) -> dict:
    """Hashes of everything a run could change (the working tree, without the DVC cache)."""
    skip = {".git", ".dvc"}
    return {
        p.relative_to(repo).as_posix(): sha256_file(p)
        for p in sorted(repo.rglob("*"))
        if p.is_file() and not skip & set(p.relative_to(repo).parts) and "__pycache__" not in p.parts
    }


def promoted_verdict(repo: Path, batch: str) -> str:
    """The gate's verdict on a batch it promoted: PASS, or INCONCLUSIVE under params.yaml's
    `inconclusive: pass` (a 3-epoch model on 80 users rarely gives an erasure check power)."""
    audit = read_json(repo / f"reports/{batch}/audit.json")
    assert audit["promoted"] and audit["verdict"] in ("pass", "inconclusive") and audit["failed"] == []
    return audit["verdict"]


def user_requests(repo: Path, name: str, n: int, skip: int = 0) -> Path:
    """A request file erasing `n` users still in the current retain set."""
    last = batches_of(repo)[-1]["id"]
    users = pd.read_parquet(repo / f"data/batches/{last}/sets/train.parquet")["user"].unique()[skip : skip + n]
    raw = pd.read_csv(repo / "data/datasets/tiny/user_map.tsv", sep="\t", dtype={"raw_id": str}).set_index("userID")[
        "raw_id"
    ]
    inbox = repo / "data/deletions/inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    rows = [
        {"request_id": f"{name}-{k}", "kind": "user", "user_id": raw[int(u)], "received_at": "2026-02-01T00:00:00Z"}
        for k, u in enumerate(users)
    ]
    path = inbox / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- 1. the whole batch, inbox -> PDF ---------------------------------------------------------


def test_flow_erases_the_inbox_and_records_it_in_dvc(repo, harness, monkeypatch):
    from prefect import get_client

    run([str(BIN / "tru"), "demo-requests", "data/deletions/inbox/demo.jsonl"], repo)
    state = flow_run(repo, monkeypatch, batch_time="2026-02-01T02:00:00Z")
    assert state.is_completed(), state.message
    out = state.result()
    b = out["batch"]
    assert b == "b20260201T020000Z"  # named (and seeded) by the given time
    verdict = promoted_verdict(repo, b)
    assert out["status"] == "erased" and out["verdict"] == verdict
    assert out["ran"] == ["sets", "map", "erase", "repair", "evaluate_batch", "audit", "report"]
    assert (repo / out["pdf"]).read_bytes()[:5] == b"%PDF-"
    assert not list((repo / "data/deletions/inbox").iterdir())  # archived
    assert (repo / f"data/deletions/batches/{b}/input.dvc").is_file()
    assert (repo / f"data/ledger/{b}/requests.parquet.dvc").is_file()
    status = ledger(repo, b)
    assert set(status["status"]) == {"erased", "rejected"} and (status["status"] == "erased").sum() > 10
    # dvc.lock holds every stage of the batch, with the hashes of the files the flow wrote
    assert "up to date" in dvc_status(repo)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    model_out = next(o for o in lock["repair@0"]["outs"] if o["path"] == f"data/batches/{b}/model")
    assert model_out["nfiles"] == 2
    pdf_out = next(o for o in lock["report@0"]["outs"] if o["path"] == f"reports/{b}/evidence.pdf")
    import hashlib

    assert pdf_out["md5"] == hashlib.md5((repo / out["pdf"]).read_bytes()).hexdigest()
    # what a person sees in the Prefect UI: a summary, a metrics table and a link to the PDF
    with get_client(sync_client=True) as client:
        arts = {a.key: a for a in client.read_artifacts() if a.key}
    assert {"erasure-summary", "erasure-metrics", "evidence-pdf"} <= set(arts)
    summary = arts["erasure-summary"].data
    assert verdict.upper() in summary and b in summary
    rows = {line.split("|")[1].strip(): line for line in summary.splitlines() if line.startswith("| ")}
    assert {"retain_recall_drop", "membership_vs_shadow", "item_residue", "backdoor_lift"} <= set(rows)
    # a check the gate does not judge says why, in the UI
    assert "not judged: reported, not judged" in rows["forget_recall_ratio"]
    # a link a browser follows: the evidence portal's URL of the PDF, never file://
    assert arts["evidence-pdf"].data.endswith(f"http://127.0.0.1:8300/batches/{b}/evidence.pdf)")
    assert "forget recall@20" in arts["erasure-metrics"].data
    # the lineage: pushed to the DVC remote and committed in git, nothing of the batch left over
    assert out["lineage"]["pushed"] > 0 and out["lineage"]["commit"] and out["lineage"]["notes"] == []
    # the evidence signed before it was committed: the statement and the key are in the commit
    assert out["lineage"]["signed"] and "signing key " + out["lineage"]["signed"] in run(
        [str(BIN / "tru"), "evidence", "verify", "--batch", b], repo
    )
    committed = run(["git", "show", "--name-only", "--format=", "HEAD"], repo).split()
    assert f"reports/{b}/evidence.statement.sig" in committed and any(f.startswith("reports/keys/") for f in committed)
    assert run(["git", "log", "-1", "--format=%s"], repo).startswith(f"erasure batch {b}: audit gate {verdict.upper()}")
    assert run(["git", "status", "--porcelain", "--", "batches.yaml", "dvc.lock", "data", "reports"], repo) == ""
    assert "lineage: committed in git and pushed to DVC remote 'store'" in run([str(BIN / "tru"), "status"], repo)


def test_an_empty_inbox_finishes_quickly_and_changes_nothing(repo, harness, monkeypatch):
    before = snapshot(repo)
    lock_before = (repo / "dvc.lock").read_bytes()
    state = flow_run(repo, monkeypatch)
    assert state.is_completed() and state.result() == {"status": "empty", "batch": None}
    assert snapshot(repo) == before and (repo / "dvc.lock").read_bytes() == lock_before
    # a finished batch whose stages went stale (the code changed) is not re-erased behind anyone's back
    code = repo / "tru/unlearning/__init__.py"
    original = code.read_text()
    code.write_text(original + "# changed\n")
    try:
        assert "erase@0" in dvc_status(repo)
        before = snapshot(repo)
        state = flow_run(repo, monkeypatch)
        assert state.result()["status"] == "empty" and snapshot(repo) == before
    finally:
        code.write_text(original)


def test_a_second_run_while_one_holds_the_lock_exits_cleanly(repo, harness, monkeypatch):
    user_requests(repo, "waiting", 2)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from tru.runlock import run_lock\n"
            "with run_lock('test holder'):\n print('held', flush=True); time.sleep(120)",
        ],
        cwd=repo,
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(repo)
        state = flow_run(repo, monkeypatch)
        assert state.is_completed()
        out = state.result()
        assert out["status"] == "locked" and "test holder" in out["message"] and f"pid {holder.pid}" in out["message"]
        assert snapshot(repo) == before  # the request still waits in the inbox
        res = subprocess.run([str(BIN / "tru"), "ingest"], cwd=repo, capture_output=True, text=True, env=env())
        assert res.returncode == 5 and "another erasure run is in progress" in res.stderr
        # the losing nightly is not a success either: a scheduler sees exit 5, not 0
        res = subprocess.run([str(BIN / "tru"), "nightly"], cwd=repo, capture_output=True, text=True, env=env())
        assert res.returncode == 5 and "another erasure run is in progress" in res.stderr, res.stderr[-2000:]
        # `dvc repro` of a batch through `tru repro`, or a batch stage command alone: refused as well
        b = batches_of(repo)[0]["id"]
        for cmd in (["repro", "--force", "--single-item", "report@0"], ["audit", "--batch", b]):
            res = subprocess.run([str(BIN / "tru"), *cmd], cwd=repo, capture_output=True, text=True, env=env())
            assert res.returncode == 5 and "another erasure run is in progress" in res.stderr, (cmd, res.stderr)
        assert snapshot(repo) == before
    finally:
        holder.kill()
        holder.wait()
    assert (repo / "data/deletions/inbox/waiting.jsonl").is_file()


# --- 2. the auditor's reproduction ---------------------------------------------------------------


def test_fresh_clone_reproduces_checkpoint_metrics_and_pdf_byte_for_byte(repo):
    """The auditor's path as the pipeline leaves it: nothing pushed or committed by hand."""
    b = batches_of(repo)[0]["id"]
    clone = repo.parent / f"{repo.name}-clone"  # beside it: the committed remote `../store` is the same folder
    run(["git", "clone", "-q", str(repo), str(clone)], repo.parent)
    run([str(BIN / "dvc"), "pull", "-q"], clone)
    files = {
        "checkpoint": f"data/batches/{b}/model/model.safetensors",
        "metrics": f"reports/{b}/metrics.json",
        "pdf": f"reports/{b}/evidence.pdf",
        "audit": f"reports/{b}/audit.json",
    }
    for path in files.values():
        (clone / path).unlink()  # nothing left from the original run: everything is recomputed
    # the batch's stages only (the base stages are the pipeline's own business, tested elsewhere)
    stages = [f"{s}@0" for s in ("sets", "map", "erase", "repair", "evaluate_batch", "audit", "report")]
    run([str(BIN / "dvc"), "repro", "--force", "--single-item", *stages], clone)
    for what, path in files.items():
        assert sha256_file(clone / path) == sha256_file(repo / path), f"{what} differs: {path}"
    assert "up to date" in dvc_status(clone)
    # what the auditor recomputed is what the operator signed (the auditor has no key)
    out = subprocess.run(
        [str(BIN / "tru"), "evidence", "verify", "--batch", b],
        cwd=clone,
        env=env(TRU_SIGNING_KEY=""),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "every artifact matches its recorded sha256 and the signed statement" in out.stdout


# --- 3. crash safety ----------------------------------------------------------------------------


def test_sigkill_in_the_middle_of_the_update_then_a_clean_rerun(repo, harness, monkeypatch):
    """Kill the flow's process while the update runs; the next run completes the batch once."""
    n_before = len(batches_of(repo))
    proc = subprocess.Popen(
        [str(BIN / "tru"), "nightly", "--batch-time", "2026-02-03T02:00:00Z"],
        cwd=repo,
        env=env(PREFECT_API_URL=harness),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    killed_at = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            bs = batches_of(repo)
            if len(bs) > n_before and f"map@{n_before}" in lock_stages(repo):  # the update is next
                time.sleep(1.0)
                os.killpg(proc.pid, signal.SIGKILL)
                killed_at = bs[-1]["id"]
                break
            time.sleep(0.2)
    finally:
        if proc.poll() is None and killed_at is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert killed_at is not None, "the flow finished before it could be killed"
    b = killed_at
    assert b == "b20260203T020000Z"  # --batch-time
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert f"audit@{n_before}" not in lock and f"report@{n_before}" not in lock
    assert not (repo / f"reports/{b}/audit.json").exists()
    assert set(ledger(repo, b)["status"]) == {"accepted"}  # consistent: ingested, nothing erased yet
    assert not (repo / "data/deletions/inbox/waiting.jsonl").exists()  # archived with its batch

    state = flow_run(repo, monkeypatch, batch_time="2026-02-03T05:00:00Z")  # not used: the batch resumes
    assert state.is_completed(), state.message
    out = state.result()
    assert out["batch"] == b and len(batches_of(repo)) == n_before + 1  # the same batch, not a new one
    assert out["skipped"][:2] == ["sets", "map"] and "audit" in out["ran"] and "report" in out["ran"]
    status = ledger(repo, b)
    assert set(status["status"]) == {"erased"} and len(status) == 2  # one event per request, once
    assert not list(repo.rglob(".tru-tmp.*"))
    assert "up to date" in dvc_status(repo)
    # the resumed erasure is the erasure: a forced rerun of the update gives the same checkpoint
    ckpt = repo / f"data/batches/{b}/unlearned/model.safetensors"
    digest = sha256_file(ckpt)
    run([str(BIN / "dvc"), "repro", "--force", "--single-item", f"erase@{n_before}"], repo)
    assert sha256_file(ckpt) == digest


# --- 4. a refused erasure --------------------------------------------------------------------------


def test_a_refused_gate_fails_the_flow_and_keeps_the_model(repo, harness, monkeypatch):
    from prefect import get_client

    from tru.errors import AuditGateFailed

    # one more batch first: three audited batches before the refused one
    user_requests(repo, "third", 2, skip=8)
    state = flow_run(repo, monkeypatch, batch_time="2026-02-03T12:00:00Z")
    assert state.is_completed() and state.result()["verdict"] == promoted_verdict(repo, state.result()["batch"])
    assert len(batches_of(repo)) == 3
    current = f"data/batches/{batches_of(repo)[-1]['id']}/model"
    user_requests(repo, "strict", 2)
    strict = yaml.safe_load((repo / "params.yaml").read_text())
    strict["audit"]["gate"].update(HELD_FOR_REVIEW)  # INCONCLUSIVE by construction, refused by policy
    (repo / "params.yaml").write_text(yaml.safe_dump(strict, sort_keys=False))
    try:
        state = flow_run(repo, monkeypatch, batch_time="2026-02-04T02:00:00Z")
        assert state.is_failed()
        with pytest.raises(AuditGateFailed, match="audit gate inconclusive") as err:
            state.result()
        assert "needs_review" in str(err.value) and current in str(err.value) and "tru review" in str(err.value)
        b = batches_of(repo)[-1]["id"]
        audit = read_json(repo / f"reports/{b}/audit.json")
        assert audit["verdict"] == "inconclusive" and not audit["promoted"] and audit["failed"] == []
        assert set(ledger(repo, b)["status"]) == {"needs_review"}
        assert not (repo / f"reports/{b}/evidence.pdf").exists()
        res = subprocess.run([str(BIN / "tru"), "status"], cwd=repo, capture_output=True, text=True, env=env())
        assert f"current model: {current}" in res.stdout
        # the stage command alone: one line saying why, exit status 4, nothing changes
        out = run([str(BIN / "tru"), "audit", "--batch", b], repo, expect=4)
        assert "audit gate inconclusive" in out and "Traceback" not in out
        assert set(ledger(repo, b)["status"]) == {"needs_review"}
        # the next night: nothing new is erased until a person clears the batch; the run says how
        user_requests(repo, "later", 3, skip=5)
        state = flow_run(repo, monkeypatch, batch_time="2026-02-05T02:00:00Z")
        assert state.is_failed() and "awaits review" in state.message and f"tru review --batch {b}" in state.message
        with get_client(sync_client=True) as client:
            notes = [a.data for a in client.read_artifacts() if a.key == "erasure-summary"]
        blocked = [n for n in notes if n.startswith(f"# Erasure queue blocked by batch `{b}`")]
        assert blocked and "erasure-review/review" in blocked[0] and "1 request file(s) wait" in blocked[0]
        assert (repo / "data/deletions/inbox/later.jsonl").is_file()
        out = run([str(BIN / "tru"), "ingest"], repo, expect=2)  # by hand: refused too, the file stays
        assert f"batch {b} failed its audit gate" in out and (repo / "data/deletions/inbox/later.jsonl").is_file()
    finally:
        run(["git", "checkout", "params.yaml"], repo)


def earlier_batches(repo: Path) -> dict:
    """What must not change when a refused batch is cleared: the earlier batches' dvc.lock
    entries and evidence files."""
    ids = [x["id"] for x in batches_of(repo)[:-1]]
    lock = lock_stages(repo)
    entries = {k: v for k, v in lock.items() if k.split("@")[-1] in {str(i) for i in range(len(ids))}}
    files = {p: sha256_file(repo / p) for b in ids for p in (f"reports/{b}/evidence.pdf", f"reports/{b}/audit.json")}
    return {"lock": entries, "files": files, "ids": ids}


def test_a_killed_review_resumes_and_the_queue_moves_on(repo, harness, monkeypatch):
    """The way out of a refusal: `tru review` (killed in the middle here), then the Prefect flow
    `erasure-review` finishes it by an exact retrain of that batch alone; the earlier batches'
    evidence stays as it was and verifiable; the next nightly run takes the waiting requests."""
    from flows.erasure import erasure_review

    b = batches_of(repo)[-1]["id"]
    k = len(batches_of(repo)) - 1
    before = earlier_batches(repo)
    assert len(before["ids"]) == 3
    proc = subprocess.Popen(
        [str(BIN / "tru"), "review"],
        cwd=repo,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and batches_of(repo)[-1].get("method") != "retrain":
            assert proc.poll() is None, "the review ended before it recorded the retrain"
            time.sleep(0.1)
        time.sleep(2.0)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert batches_of(repo)[-1]["method"] == "retrain"
    assert f"report@{k}" not in lock_stages(repo)  # killed before it finished
    # a nightly run now would resume it rather than refuse: the review flow does it here
    monkeypatch.chdir(repo)
    for key, value in env().items():
        monkeypatch.setenv(key, value)
    state = erasure_review(return_state=True)
    assert state.is_completed(), state.message
    out = state.result()
    assert out["status"] == "cleared" and out["batch"] == b and out["verdict"] == "pass"
    assert "erase" in out["ran"] and "report" in out["ran"] and out["skipped"][:2] == ["sets", "map"]
    audit = read_json(repo / f"reports/{b}/audit.json")
    assert audit["method"] == "retrain" and audit["basis"].startswith("exact retrain") and audit["failed"] == []
    assert set(ledger(repo, b)["status"]) == {"erased"}
    assert out["lineage"]["commit"] and "up to date" in dvc_status(repo)
    # the batches before it: not rerun, their evidence the same and verifiable
    assert earlier_batches(repo) == before
    for earlier in before["ids"]:
        assert "every artifact matches" in run([str(BIN / "tru"), "evidence", "verify", "--batch", earlier], repo)
    # the queue moves on
    state = flow_run(repo, monkeypatch, batch_time="2026-02-05T02:00:00Z")
    assert state.is_completed() and state.result()["verdict"] == promoted_verdict(repo, state.result()["batch"])
    assert not (repo / "data/deletions/inbox/later.jsonl").exists()
    assert "up to date" in dvc_status(repo)
