"""The deletion inbox: which files wait there, and how they move into a batch's archive
(`<batches_dir>/<batch_id>/input/`), never overwritten or deleted. A crash between writing
a batch's ledger file and archiving its inputs is finished here, not ingested twice."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from tru.errors import DataError
from tru.io import sha256_file
from tru.requests.ledger import batch_ids, batch_metadata, check_batch_id

PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".swp", ".lock")
INPUT_DIR = "input"  # a batch's archived inputs: <batches_dir>/<batch_id>/input/


def pending_files(inbox_dir: str | Path) -> list[Path]:
    """Files waiting in the inbox, sorted by name. Dotfiles, folders and partial uploads
    (`*.part`, `*.tmp`, ...) are skipped; any other file is an input (an unsupported
    extension then fails the ingest with a clear error rather than being ignored)."""
    inbox_dir = Path(inbox_dir)
    if not inbox_dir.is_dir():
        return []
    return sorted(
        p
        for p in inbox_dir.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.lower().endswith(PARTIAL_SUFFIXES)
    )


def _move(src: Path, dst: Path) -> None:
    """Move without ever overwriting or deleting data (copy + rename across file systems)."""
    if dst.exists():
        raise DataError(f"{dst}: already exists; not overwriting an archived input")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dst)
    except OSError as err:
        if err.errno != errno.EXDEV:  # another file system: copy, rename, then unlink
            raise
        tmp = dst.with_name(f".{dst.name}.moving")
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
        os.unlink(src)


def take_inbox(
    inbox_dir: str | Path, batches_dir: str | Path, batch_id: str, files: Sequence[Path] | None = None
) -> list[Path]:
    """Archive inbox files under `<batches_dir>/<batch_id>/input/` (os.replace; never deletes
    or overwrites). `files` defaults to everything pending. Returns the archived paths.
    Call it only after the batch's ledger file is written."""
    check_batch_id(batch_id)
    files = pending_files(inbox_dir) if files is None else [Path(f) for f in files]
    dest = Path(batches_dir) / batch_id / INPUT_DIR
    moved = []
    for src in files:
        dst = dest / src.name
        _move(src, dst)
        moved.append(dst)
    return moved


def finish_interrupted_moves(inbox_dir: Path, batches_dir: Path, ledger_dir: Path) -> list[str]:
    """An ingest that crashed after writing its ledger file but before archiving every input
    leaves recorded files in the inbox. Finish those moves (matched by name and SHA-256 to
    the batch's recorded inputs) instead of ingesting them a second time.

    Returns one `"<file name> -> <batch id>"` line per file moved."""
    pending = pending_files(inbox_dir)
    if not pending:
        return []
    recorded: dict[tuple[str, str], str] = {}  # (name, sha256) -> the latest batch that read it
    for b in batch_ids(ledger_dir):
        for inp in batch_metadata(ledger_dir, b).get("inputs", []):
            recorded[(inp["name"], inp["sha256"])] = b
    names = {name for name, _ in recorded}
    done = []
    for p in pending:
        if p.name not in names:
            continue
        batch = recorded.get((p.name, sha256_file(p)))
        if batch is not None and not (batches_dir / batch / INPUT_DIR / p.name).exists():
            _move(p, batches_dir / batch / INPUT_DIR / p.name)
            done.append(f"{p.name} -> {batch}")
    return done
