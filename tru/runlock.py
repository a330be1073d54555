"""One erasure run at a time: an exclusive lock around everything that writes the ledger,
batches.yaml or dvc.lock (the nightly and review flows, `tru ingest`, `tru review`, `tru
lineage`, and every batch stage command, so a `dvc repro` of a batch's stages cannot run while
a nightly does: its stage command exits 5 naming the holder, and `dvc repro` stops).

Re-entrant along a process tree: the holder marks its environment (HELD_ENV: the project's
folder), so the work it runs itself, in this process or in a child (`dvc repro` started by a
holder), does not wait for the lock its parent holds.

An OS file lock (fcntl, through `filelock`): the kernel releases it when its holder dies,
even by SIGKILL, so a crashed run never leaves a stale lock behind. Who holds it (pid, what,
since when) is written next to it, so a refused second run can say why.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from tru.errors import TruError

LOCK_FILE = Path(".tru-run.lock")
HOLDER_FILE = Path(".tru-run.holder")
HELD_ENV = "TRU_RUN_LOCK_HELD"


class RunLocked(TruError):
    """Another erasure run holds the lock."""

    exit_code = 5


def _holder(root: Path) -> str:
    try:
        h = json.loads((root / HOLDER_FILE).read_text())
        return f"{h['what']} (pid {h['pid']}, since {h['since']})"
    except (OSError, ValueError, KeyError):
        return "another process"


@contextlib.contextmanager
def run_lock(what: str, root: str | Path = ".", wait: float = 0) -> Iterator[None]:
    """Hold the run lock of the project at `root` while the body runs.

    `wait`: seconds to wait for a running holder (0: fail at once; negative: wait forever).
    Raises RunLocked naming the holder when the lock stays taken."""
    root = Path(root)
    if os.environ.get(HELD_ENV) == str(root.resolve()):  # held by this process or its parent
        yield
        return
    lock = FileLock(str(root / LOCK_FILE))
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        raise RunLocked(
            f"another erasure run is in progress: {_holder(root)}; nothing was changed (try again when it has finished)"
        ) from None
    try:
        since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        (root / HOLDER_FILE).write_text(json.dumps({"what": what, "pid": os.getpid(), "since": since}))
        os.environ[HELD_ENV] = str(root.resolve())
        yield
    finally:
        os.environ.pop(HELD_ENV, None)
        with contextlib.suppress(OSError):
            (root / HOLDER_FILE).unlink()
        lock.release()
