"""Lineage of a batch: the git commit of the code and the dvc.lock entries of its stages."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tru.errors import DataError
from tru.evidence import layout

UNKNOWN = "unknown"
# pipeline order of the per-batch stages (dvc.yaml); stages not listed here sort after them
STAGE_ORDER = ("sets", "map", "erase", "retrain", "repair", "evaluate_batch", "audit", "report")


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def git_commit(root: str | Path) -> str:
    """HEAD of the repository at `root`, or "unknown" when it is not a git checkout."""
    commit = _git(Path(root), "rev-parse", "HEAD")
    return commit if commit and re.fullmatch(r"[0-9a-f]{40,64}", commit) else UNKNOWN


def repo_url(root: str | Path) -> str:
    """`origin`'s URL without credentials, or a placeholder when there is none (or it is a
    local path, which an auditor elsewhere cannot use)."""
    if _git(Path(root), "rev-parse", "--git-dir") is None:  # not a checkout: don't read global config
        return "<repo-url>"
    url = _git(Path(root), "config", "--get", "remote.origin.url")
    if not url:
        return "<repo-url>"
    url = re.sub(r"^(\w+://)[^/@]*@", r"\1", url)  # drop user:token@ from https URLs
    if re.match(r"^(\w+://|[\w.-]+@[\w.-]+:)", url):
        return url
    return "<repo-url>"


def _stage_key(name: str) -> tuple:
    group = name.split("@", 1)[0]
    return (STAGE_ORDER.index(group) if group in STAGE_ORDER else len(STAGE_ORDER), name)


def _hashes(entries) -> list[dict]:
    rows = []
    for e in entries or []:
        if isinstance(e, dict) and "path" in e:
            digest = e.get("md5") or e.get("sha256") or e.get("etag") or ""
            rows.append({"path": str(e["path"]), "md5": str(digest)})
    return sorted(rows, key=lambda r: r["path"])


def dvc_stages(batch_id: str, root: str | Path, include_evidence: bool = False) -> dict[str, dict]:
    """dvc.lock entries of the batch's stages: their command, params and dep/out hashes.

    A stage belongs to the batch when its name ends in `@<batch>` (foreach over a mapping)
    or its locked command names `--batch <batch>` (foreach over a list, where DVC names
    stages `erase@0`, `erase@1`, ...). The stage that writes the evidence itself is left out
    unless `include_evidence`: its locked hashes are those of the previous PDF, so putting
    them in the PDF would make every rendering differ from the last."""
    path = Path(root) / "dvc.lock"
    if not path.is_file():
        return {}
    try:
        lock = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise DataError(f"{path}: not valid YAML ({err.__class__.__name__})") from None
    stages = lock.get("stages") if isinstance(lock, dict) else None
    own = {(layout.report_dir(batch_id) / name).as_posix() for name in layout.OWN_FILES}
    out = {}
    for name, entry in (stages or {}).items():
        if not isinstance(entry, dict):
            continue
        if not include_evidence and any(isinstance(o, dict) and str(o.get("path")) in own for o in entry.get("outs") or []):
            continue
        cmd = entry.get("cmd", "")
        cmd = " ".join(cmd) if isinstance(cmd, list) else str(cmd)
        if name.endswith(f"@{batch_id}") or re.search(rf"--batch[ =]{re.escape(batch_id)}(\s|$)", cmd):
            out[name] = {"cmd": cmd, "deps": _hashes(entry.get("deps")), "outs": _hashes(entry.get("outs")),
                         "params": entry.get("params") or {}}
    return dict(sorted(out.items(), key=lambda kv: _stage_key(kv[0])))
