"""Lineage of a batch: a content digest of the code that renders its evidence and the
dvc.lock entries of its stages.

Nothing here asks git: HEAD and the remote's URL differ between the checkout that made the
evidence and a fresh clone that reproduces it (HEAD is then the commit that recorded the
batch, the URL is wherever it was cloned from), so neither may reach the PDF.
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

import yaml

import tru
from tru.errors import DataError
from tru.evidence import layout

# pipeline order of the per-batch stages (dvc.yaml); stages not listed here sort after them
STAGE_ORDER = ("sets", "map", "erase", "retrain", "repair", "evaluate_batch", "audit", "report")
REPORT_STAGE = "report"  # the stage that renders the evidence (dvc.yaml)
CODE_SUFFIXES = (".py", ".j2", ".css")


def code_files(package_dir: str | Path) -> list[tuple[str, Path]]:
    """(posix path relative to `package_dir`, path) of every source file of the package,
    sorted by the relative path: *.py, *.j2 and *.css, nothing under __pycache__ or hidden."""
    base = Path(package_dir)
    out = []
    for p in base.rglob("*"):
        rel = p.relative_to(base)
        if (
            p.suffix in CODE_SUFFIXES
            and p.is_file()
            and not any(part.startswith(".") or part == "__pycache__" for part in rel.parts)
        ):
            out.append((rel.as_posix(), p))
    return sorted(out)


@functools.cache
def code_digest(package_dir: str | Path | None = None) -> str:
    """SHA-256 identifying the code: over the package's source files (`code_files`), in order,
    each as its relative posix path, a NUL, its size in bytes (decimal), a NUL, its bytes.

    Default: the `tru` package this process runs. The same files give the same digest in
    any checkout; computed once per process (the code a process runs is what it loaded)."""
    if package_dir is None:
        package_dir = Path(tru.__file__).parent
    digest = hashlib.sha256()
    for rel, path in code_files(package_dir):
        data = path.read_bytes()
        digest.update(rel.encode("utf-8") + b"\0" + str(len(data)).encode("ascii") + b"\0" + data)
    return digest.hexdigest()


def _stage_key(name: str) -> tuple:
    group = name.split("@", 1)[0]
    return (STAGE_ORDER.index(group) if group in STAGE_ORDER else len(STAGE_ORDER), name)


def _hashes(entries, batch_id: str) -> list[dict]:
    rows = []
    for e in entries or []:
        if isinstance(e, dict) and "path" in e and not layout.is_timing(str(e["path"]), batch_id):
            digest = e.get("md5") or e.get("sha256") or e.get("etag") or ""
            rows.append({"path": str(e["path"]), "md5": str(digest)})
    return sorted(rows, key=lambda r: r["path"])


def dvc_stages(batch_id: str, root: str | Path) -> dict[str, dict]:
    """dvc.lock entries of the batch's stages: their command, params and dep/out hashes.

    A stage belongs to the batch when its name ends in `@<batch>` (foreach over a mapping)
    or its locked command names `--batch <batch>` (foreach over a list, where DVC names
    stages `erase@0`, `erase@1`, ...). The stage that writes the evidence itself is left out:
    its locked hashes are those of the previous PDF (and there is no entry at all when the PDF
    is first rendered), so putting them in the PDF would make every rendering differ from the
    last. So are the hashes of the batch's wall-clock timing files (DVC records them as uncached
    outputs): they differ on every run."""
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
        if any(isinstance(o, dict) and str(o.get("path")) in own for o in entry.get("outs") or []):
            continue
        cmd = entry.get("cmd", "")
        cmd = " ".join(cmd) if isinstance(cmd, list) else str(cmd)
        if name.endswith(f"@{batch_id}") or re.search(rf"--batch[ =]{re.escape(batch_id)}(\s|$)", cmd):
            out[name] = {
                "cmd": cmd,
                "deps": _hashes(entry.get("deps"), batch_id),
                "outs": _hashes(entry.get("outs"), batch_id),
                "params": entry.get("params") or {},
            }
    return dict(sorted(out.items(), key=lambda kv: _stage_key(kv[0])))


def repro_stages(stages: dict[str, dict]) -> list[str]:
    """The DVC stages that reproduce the batch, in pipeline order: its stages in dvc.lock
    (`dvc_stages`) and, last, its report stage. The report stage's name is derived from the
    others' (`report@<their common suffix>`), never read from its own lock entry: that entry is
    missing when the batch's PDF is first rendered and present when a reproduction renders it
    again, and the PDF must be the same both times."""
    names = list(stages)
    suffixes = {name.split("@", 1)[1] for name in names if "@" in name}
    if len(suffixes) == 1:
        names.append(f"{REPORT_STAGE}@{suffixes.pop()}")
    return names
