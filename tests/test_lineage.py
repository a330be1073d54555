"""A batch's lineage in git and the DVC remote (tru/lineage.py): what is committed (and what is
not: data, raw ids), on the checked-out branch or a branch of its own, pushed to the remote,
and what `tru status` says while something is missing. A small git + DVC repository with the
files a batch leaves, no pipeline run (the flows' own test runs it: tests/test_flows.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tru import lineage

B = "b20260101T020000Z"


def sh(cwd: Path, *args: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    res = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, f"{args} exited {res.returncode}: {res.stdout}{res.stderr}"
    return res.stdout


def dvc(cwd: Path, *args: str) -> str:
    return sh(cwd, sys.executable, "-m", "dvc", *args)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A repository after one batch: its registry, dvc.lock, a DVC-tracked request file (raw
    ids), a DVC-tracked model and git-tracked reports; the base state committed."""
    root = tmp_path / "project"
    root.mkdir()
    (root / ".gitignore").write_text((Path(__file__).resolve().parents[1] / ".gitignore").read_text())
    sh(root, "git", "init", "-q", "-b", "main")
    sh(root, "git", "config", "user.email", "ci@example.org")
    sh(root, "git", "config", "user.name", "ci")
    dvc(root, "init", "-q")
    (root / "batches.yaml").write_text("batches: []\n")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "base")
    # what a batch leaves
    (root / "batches.yaml").write_text(
        f"batches:\n- id: {B}\n  prior: data/split\n  base_model: data/models/base\n  method: tru\n"
    )
    inputs = root / f"data/deletions/batches/{B}/input"
    inputs.mkdir(parents=True)
    (inputs / "requests.jsonl").write_text('{"user_id": "raw-user-4711"}\n')
    model = root / f"data/batches/{B}/model"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"weights")
    dvc(root, "add", "-q", f"data/deletions/batches/{B}/input", f"data/batches/{B}/model")
    (root / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    rep = root / f"reports/{B}"
    rep.mkdir(parents=True)
    (rep / "audit.json").write_text('{"verdict": "pass"}\n')
    monkeypatch.chdir(root)
    return root


def tracked(root: Path, rev: str = "HEAD") -> set[str]:
    return set(sh(root, "git", "ls-tree", "-r", "--name-only", rev).split())


def test_commit_on_the_checked_out_branch_holds_the_lineage_and_no_data(project):
    assert set(lineage.uncommitted()) >= {"batches.yaml", "dvc.lock", f"reports/{B}/audit.json"}
    sha = lineage.commit(f"erasure batch {B}")
    assert sha == sh(project, "git", "rev-parse", "HEAD").strip()
    files = tracked(project)
    assert {
        "batches.yaml",
        "dvc.lock",
        f"reports/{B}/audit.json",
        f"data/deletions/batches/{B}/input.dvc",
        f"data/batches/{B}/model.dvc",
    } <= files
    # the data stays in DVC: no request file (raw ids) and no weights in git
    assert not any(f.endswith(("requests.jsonl", "model.safetensors")) for f in files)
    found = subprocess.run(["git", "grep", "-I", "raw-user-4711", "HEAD"], cwd=project, capture_output=True)
    assert found.returncode == 1  # the raw id is in no committed file
    assert lineage.uncommitted() == []
    assert lineage.commit("again") is None  # nothing new: no empty commit
    assert sh(project, "git", "log", "-1", "--format=%s").strip() == f"erasure batch {B}"


def test_other_staged_work_is_left_staged_and_uncommitted(project):
    (project / "notes.txt").write_text("work in progress\n")
    sh(project, "git", "add", "notes.txt")
    lineage.commit("lineage")
    assert "notes.txt" not in tracked(project)
    assert sh(project, "git", "diff", "--cached", "--name-only").split() == ["notes.txt"]


def test_a_branch_of_its_own_leaves_the_working_tree_and_index_alone(project):
    head = sh(project, "git", "rev-parse", "HEAD").strip()
    status = sh(project, "git", "status", "--porcelain")
    first = lineage.commit("lineage 1", branch="tru-lineage")
    assert first and sh(project, "git", "rev-parse", "HEAD").strip() == head  # the checked-out branch did not move
    assert sh(project, "git", "status", "--porcelain") == status
    assert f"reports/{B}/audit.json" in tracked(project, "tru-lineage")
    assert lineage.uncommitted("tru-lineage") == [] and lineage.uncommitted() != []
    # the next batch's report: one more commit on the branch, on top of the last one and HEAD
    (project / f"reports/{B}/metrics.json").write_text("{}\n")
    assert lineage.uncommitted("tru-lineage") == [f"reports/{B}/metrics.json"]
    second = lineage.commit("lineage 2", branch="tru-lineage")
    parents = sh(project, "git", "log", "-1", "--format=%P", "tru-lineage").split()
    assert parents == [first, head] and second
    assert lineage.commit("lineage 3", branch="tru-lineage") is None


def test_push_sends_the_cache_to_the_default_remote_and_state_says_so(project, tmp_path):
    st = lineage.state()
    assert st.git and st.remote is None and st.uncommitted
    with pytest.raises(lineage.LineageError, match="no default DVC remote"):
        lineage.push()
    dvc(project, "remote", "add", "-d", "store", "../store")
    assert lineage.state().unpushed == 4  # the request file and the weights, and their folders' listings
    assert lineage.push() == 4
    assert lineage.state().unpushed == 0
    # a fresh clone beside it pulls the same files through the committed config
    lineage.commit("lineage")
    sh(project, "git", "add", ".dvc/config")
    sh(project, "git", "commit", "-qm", "remote")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(project), str(clone))
    dvc(clone, "pull", "-q")
    assert (clone / f"data/batches/{B}/model/model.safetensors").read_bytes() == b"weights"


def test_record_never_raises_and_says_what_it_could_not_do(project, tmp_path, monkeypatch):
    out = lineage.record(B, "pass")  # no remote: pushed nothing, committed anyway
    assert out["pushed"] is None and out["commit"] and "no default DVC remote" in out["notes"][0]
    bare = tmp_path / "not-a-repo"
    bare.mkdir()
    monkeypatch.chdir(bare)
    out = lineage.record(B, "pass", do_push=False)
    assert out["commit"] is None and out["notes"] == ["not a git repository: the lineage is not committed"]


def test_status_warns_until_the_lineage_is_committed_and_pushed(project):
    from tru.status import lineage_lines

    lines = lineage_lines()
    assert any(line.startswith("warning: lineage not committed in git:") and "`tru lineage`" in line for line in lines)
    assert any("no default DVC remote" in line for line in lines)
    dvc(project, "remote", "add", "-d", "store", "../store")
    sh(project, "git", "add", ".dvc/config")
    lineage.record(B, "pass")
    assert lineage_lines() == ["lineage: committed in git and pushed to DVC remote 'store'"]
