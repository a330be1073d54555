"""A batch's lineage, recorded where an auditor finds it: committed in git and pushed to the DVC
remote, after the batch passes its audit gate (the nightly and review flows call `record`;
`tru lineage` does it by hand, `tru status` says what is missing).

The lineage of a batch is what `dvc pull` + `dvc repro --force` of its stages need in a fresh
clone: `batches.yaml`, `dvc.lock`, the `.dvc` pointers of its archived inputs and requests,
DVC's `.gitignore` files and the reports git holds (`reports/<batch>/`: JSON reports, the
manifest, the evidence's hash), and, in the DVC remote, every cached file they point at.
Nothing of it holds a raw id: the request files themselves are in the DVC cache only.

Where the commit goes (params.yaml, `lineage`):
- `branch: ""`: the checked-out branch, an ordinary commit of exactly the lineage's paths
  (anything else staged stays staged, uncommitted);
- `branch: NAME`: a branch of its own, the working tree and the index untouched; each commit
  is the checked-out commit's tree plus the lineage as it is now (so its code is the code
  that ran, when that code is committed), its parents the branch's last commit and HEAD.

Git needs an identity: the repository's `user.name`/`user.email` when set, else "tru pipeline".
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tru import batches, paths
from tru.dvcio import dvc_default_remote, dvc_push, dvc_unpushed
from tru.errors import TruError
from tru.evidence.signing import KEYS_DIR

DEFAULT_NAME = "tru pipeline"
DEFAULT_EMAIL = "tru@localhost"


class LineageError(TruError):
    """Git or DVC refused to record the lineage (the batch itself is erased and recorded in dvc.lock)."""


@dataclass
class LineageState:
    """What `status` finds for the lineage of every registered batch."""

    git: bool  # a git repository at all
    uncommitted: list[str] = field(default_factory=list)  # lineage paths that differ from the commit
    remote: str | None = None  # the default DVC remote's name; None: none configured
    unpushed: int | None = None  # cached files missing from the remote (None: not checked)
    note: str | None = None  # why a check could not be made


def batch_paths(batch_id: str) -> list[str]:
    """The lineage of one batch that git holds: its folders (git skips what they ignore: DVC's
    own `.gitignore`s keep the cached files out, the `/data/**` rule keeps out every data file)."""
    folders = [
        paths.ARCHIVE / batch_id,
        paths.LEDGER / batch_id,
        paths.BATCH_DATA / batch_id,
        paths.report_dir(batch_id),
    ]
    return [p.as_posix() for p in folders]


def lineage_paths(root: str | Path = ".") -> list[str]:
    """Every registered batch's lineage, with the registry and dvc.lock: what is committed
    (paths relative to the repository `root`)."""
    # + the evidence's public keys, and the data lifecycle (suppression list, generations, purges)
    out = [paths.BATCHES_FILE.as_posix(), "dvc.lock", KEYS_DIR.as_posix(), paths.LIFECYCLE.as_posix()]
    for b in batches.read_batches(Path(root) / paths.BATCHES_FILE):
        out += batch_paths(b["id"])
    return out


def _git(*args: str, root: Path, env: dict | None = None, check: bool = True, stdin: str | None = None) -> str:
    try:
        res = subprocess.run(
            ["git", *args],
            cwd=root,
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise LineageError(f"git {args[0]} failed: {err}") from None
    if check and res.returncode != 0:
        raise LineageError(f"git {' '.join(args[:2])} failed: {(res.stderr or res.stdout).strip().splitlines()[-1:]}")
    return res.stdout


def is_git_repo(root: str | Path = ".") -> bool:
    """Whether `root` is the top of a git working tree."""
    root = Path(root)
    try:
        res = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0 and Path(res.stdout.strip()).resolve() == root.resolve()


def _identity(root: Path) -> dict[str, str]:
    """Author and committer for git: the repository's own when configured, else tru's."""
    name = _git("config", "user.name", root=root, check=False).strip()
    email = _git("config", "user.email", root=root, check=False).strip()
    if name and email:
        return {}
    return {
        "GIT_AUTHOR_NAME": name or DEFAULT_NAME,
        "GIT_AUTHOR_EMAIL": email or DEFAULT_EMAIL,
        "GIT_COMMITTER_NAME": name or DEFAULT_NAME,
        "GIT_COMMITTER_EMAIL": email or DEFAULT_EMAIL,
    }


def _existing(items: list[str], root: Path) -> list[str]:
    return [p for p in items if (root / p).exists()]


def current_branch(root: str | Path = ".") -> str | None:
    """The checked-out branch; None on a detached HEAD."""
    out = _git("symbolic-ref", "--quiet", "--short", "HEAD", root=Path(root), check=False).strip()
    return out or None


def commit(message: str, branch: str = "", root: str | Path = ".", extra: list[str] | None = None) -> str | None:
    """Commit the lineage of every registered batch (`lineage_paths`) on `branch` ("" or the
    checked-out one: an ordinary commit of those paths only; another: see the module's
    docstring). `extra`: more paths of the change (a consolidation's base-model reports, a
    purge's removed or rewritten folders): those that exist, and those git tracks (a removal).
    Returns the new commit's hash, or None when the lineage was committed already."""
    root = Path(root)
    items = _existing(lineage_paths(root), root)
    if extra:
        tracked = _git("ls-files", "--", *extra, root=root, check=False).split()
        items += sorted(
            {
                p
                for p in extra
                if (root / p).exists() or any(t == p or t.startswith(p.rstrip("/") + "/") for t in tracked)
            }
            - set(items)
        )
    env = _identity(root)
    here = current_branch(root)
    if not branch or branch == here:
        _git("add", "-A", "--", *items, root=root)
        if not _git("diff", "--cached", "--name-only", "--", *items, root=root).strip():
            return None
        _git("commit", "-q", "-m", message, "--", *items, root=root, env=env)
        return _git("rev-parse", "HEAD", root=root).strip()
    # a branch of its own: a temporary index holding HEAD's tree plus the lineage
    head = _git("rev-parse", "HEAD", root=root).strip()
    tip = _git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", root=root, check=False).strip()
    with tempfile.TemporaryDirectory() as tmp:
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git("read-tree", head, root=root, env=index)
        _git("add", "-A", "--", *items, root=root, env=index)
        tree = _git("write-tree", root=root, env=index).strip()
    if tip and _git("rev-parse", f"{tip}^{{tree}}", root=root).strip() == tree:
        return None
    parents = [p for p in dict.fromkeys([tip, head]) if p]
    args = ["commit-tree", tree, *[a for p in parents for a in ("-p", p)], "-m", message]
    new = _git(*args, root=root, env=env).strip()
    _git("update-ref", f"refs/heads/{branch}", new, *([tip] if tip else []), root=root)
    return new


def uncommitted(branch: str = "", root: str | Path = ".") -> list[str]:
    """The lineage files whose content in the working tree differs from what `branch` ("" =
    HEAD) holds, new and deleted ones included (blob hashes compared: it works the same for
    the checked-out branch and for a branch of its own)."""
    root = Path(root)
    every = lineage_paths(root)
    items = _existing(every, root)
    rev = branch or "HEAD"
    if not _git("rev-parse", "--verify", "--quiet", rev, root=root, check=False).strip():
        return items
    committed: dict[str, str] = {}
    for line in _git("ls-tree", "-r", rev, "--", *every, root=root).splitlines():
        meta, path = line.split("\t", 1)
        committed[path] = meta.split()[2]
    listed = _git("ls-files", "--cached", "--others", "--exclude-standard", "--", *items, root=root) if items else ""
    files = [f for f in sorted(set(listed.split())) if (root / f).is_file()]
    blobs = _git("hash-object", "--stdin-paths", root=root, stdin="\n".join(files)).split() if files else []
    here = dict(zip(files, blobs, strict=True))
    return sorted(p for p in set(here) | set(committed) if here.get(p) != committed.get(p))


def push(root: str | Path = ".") -> int:
    """`dvc push` to the default remote; returns the number of objects sent (files and folder
    listings). LineageError when no remote is set or the push fails."""
    if dvc_default_remote(root) is None:
        raise LineageError("no default DVC remote: set one (`dvc remote add -d NAME URL`) so an auditor can `dvc pull`")
    try:
        return dvc_push(root)
    except TruError as err:
        raise LineageError(str(err)) from None


def record(batch_id: str, verdict: str, do_commit: bool = True, branch: str = "", do_push: bool = True) -> dict:
    """After batch `batch_id` finished: push the DVC cache to the default remote, then commit
    the lineage in git (pushed first: a commit an auditor can check out always has its data
    in the remote). Returns what was done and, per step, why not; never raises: the erasure is
    done whatever git or the remote say, and `tru status` keeps warning until it is recorded."""
    message = f"erasure batch {batch_id}: audit gate {verdict.upper()} (lineage recorded by tru)"
    return {"batch": batch_id, **record_change(message, do_commit, branch, do_push)}


def record_change(
    message: str, do_commit: bool = True, branch: str = "", do_push: bool = True, extra: list[str] | None = None
) -> dict:
    """Push, then commit the lineage with `message` (a batch, a consolidation, a purge: `extra`
    as in `commit`); what was done and why not, never raising (see `record`)."""
    out: dict = {"pushed": None, "commit": None, "notes": []}
    if do_push:
        try:
            out["pushed"] = push()
        except LineageError as err:
            out["notes"].append(str(err))
    if do_commit:
        if not is_git_repo("."):
            out["notes"].append("not a git repository: the lineage is not committed")
        else:
            try:
                out["commit"] = commit(message, branch, extra=extra)
            except LineageError as err:
                out["notes"].append(str(err))
    return out


def state(branch: str = "", root: str | Path = ".", check_remote: bool = True) -> LineageState:
    """Whether the lineage is committed and pushed, for `tru status`."""
    root = Path(root)
    git = is_git_repo(root)
    st = LineageState(git=git)
    try:
        if git:
            st.uncommitted = uncommitted(branch, root)
        st.remote = dvc_default_remote(root)
        if st.remote is not None and check_remote:
            st.unpushed = dvc_unpushed(root)
    except TruError as err:
        st.note = str(err)
    return st
