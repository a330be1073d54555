"""The few places tru talks to DVC itself (the stages never do: DVC calls them).

Quiet unless verbose (tru.logs): DVC's "Updating lock file" after every commit and its "To track
the changes with git, run: git add ..." hints are dropped (the lineage to commit is listed once,
in docs/operations.md); its warnings and errors stay."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tru import logs
from tru.errors import TruError


def _repo(root: str | Path):
    """The DVC repository at `root`, DVC's chatter filtered (see the module's docstring)."""
    from dvc.repo import Repo  # why: slow to import; only these calls need it

    logs.quiet_filters()
    return Repo(str(root))


def dvc_add(paths: Sequence[str | Path], root: str | Path = ".") -> None:
    """`dvc add` inputs that no stage produces (a batch's archived requests and its ledger),
    so the DVC cache and remote version them and `dvc repro` can rebuild the batch."""
    try:
        with _repo(root) as repo:
            repo.add([str(p) for p in paths])
    except Exception as err:  # DVC raises many types; the user needs one line
        raise TruError(f"dvc add {' '.join(map(str, paths))} failed: {err}") from None


def dvc_repro(targets: list[str], root: str | Path = ".") -> None:
    """`dvc repro` of the given stages (and what they depend on), as the pipeline defines them."""
    try:
        with _repo(root) as repo:
            repo.reproduce(targets=targets)
    except Exception as err:
        raise TruError(f"dvc repro {' '.join(targets)} failed: {err}") from None


def stage_changes(target: str, root: str | Path = ".") -> dict:
    """What `dvc status <target>` reports for one stage alone (empty: recorded in dvc.lock and
    every dependency, parameter and output unchanged)."""
    try:
        with _repo(root) as repo:
            return repo.status(targets=[target])
    except Exception as err:
        raise TruError(f"dvc status {target} failed: {err}") from None


def dvc_commit(targets: list[str], root: str | Path = ".") -> None:
    """Record stages that ran outside `dvc repro` (the Prefect flow ran their functions) in
    dvc.lock: the hashes of exactly the dependencies and outputs now on disk; outputs go to
    the DVC cache. `dvc status` is then clean for them."""
    try:
        with _repo(root) as repo:
            for target in targets:
                repo.commit(target, force=True)
    except Exception as err:
        raise TruError(f"dvc commit {' '.join(targets)} failed: {err}") from None


def dvc_default_remote(root: str | Path = ".") -> str | None:
    """The default DVC remote's name (`dvc remote default`); None when none is set."""
    with _repo(root) as repo:
        return repo.config.get("core", {}).get("remote") or None


def dvc_push(root: str | Path = ".") -> int:
    """`dvc push` to the default remote of everything dvc.lock and the `.dvc` files point at;
    returns the number of objects sent (files and folder listings)."""
    try:
        with _repo(root) as repo:
            return int(repo.push())
    except Exception as err:
        raise TruError(f"dvc push failed: {err}") from None


def dvc_unpushed(root: str | Path = ".") -> int:
    """How many cached objects (files and folder listings) the default remote lacks (`dvc status --cloud`)."""
    try:
        with _repo(root) as repo:
            return len(repo.status(cloud=True))
    except Exception as err:
        raise TruError(f"dvc status --cloud failed: {err}") from None
