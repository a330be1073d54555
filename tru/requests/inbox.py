"""The deletion inbox: which files wait there, and how they move into a batch's archive
(`<batches_dir>/<batch_id>/input/`) or into quarantine, never overwritten or deleted. A crash
between writing a batch's ledger file and archiving its inputs is finished here, not ingested
twice.

What the inbox holds, and what becomes of it:
- regular files (not dotfiles, not partial uploads): request files, taken as one batch (a file
  named `backdoors*` is a backdoor declaration of that batch, `tru.requests.backdoors`);
- dotfiles: ignored (hidden; also this module's own temporary copies);
- partial uploads (`*.part`, `*.tmp`, ... PARTIAL_SUFFIXES): left where they are, with a
  warning, until they are renamed;
- symbolic links, folders and other non-regular entries: refused and moved to quarantine as
  they are (a link is moved as a link, never followed, so nothing outside the inbox is read).

Quarantine (`quarantine_dir_for(inbox)`, `data/deletions/quarantine/` by default) holds one
folder per ingest run, named by its batch id: each refused entry keeps its name (made unique
with `-2`, `-3`, ... when needed) and gets `<name>.reason.txt` next to it, one line saying why.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from tru.errors import DataError
from tru.io import sha256_file
from tru.requests.ledger import batch_ids, batch_metadata, check_batch_id
from tru.requests.readers import one_line

PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".swp", ".lock")
INPUT_DIR = "input"  # a batch's archived inputs: <batches_dir>/<batch_id>/input/
QUARANTINE_DIR = "quarantine"  # next to the inbox: <inbox>/../quarantine/<batch_id>/
REASON_SUFFIX = ".reason.txt"  # <quarantine>/<batch_id>/<name>.reason.txt: why <name> is there


def quarantine_dir_for(inbox_dir: str | Path) -> Path:
    """The quarantine folder that goes with an inbox: `<inbox>/../quarantine`."""
    return Path(inbox_dir).parent / QUARANTINE_DIR


def _is_partial(name: str) -> bool:
    return name.lower().endswith(PARTIAL_SUFFIXES)


def _is_regular(p: Path) -> bool:
    try:
        return stat.S_ISREG(p.lstat().st_mode)  # lstat: a symlink is never followed
    except OSError:
        return False


def pending_files(inbox_dir: str | Path) -> list[Path]:
    """Request files waiting in the inbox, sorted by name: regular files only (never a symlink),
    without dotfiles and partial uploads (`*.part`, `*.tmp`, ...). Any other file is an input
    (an unsupported extension then makes it unreadable rather than ignored)."""
    inbox_dir = Path(inbox_dir)
    if not inbox_dir.is_dir():
        return []
    return sorted(
        p for p in inbox_dir.iterdir() if not p.name.startswith(".") and not _is_partial(p.name) and _is_regular(p)
    )


def refused_entries(inbox_dir: str | Path) -> list[tuple[Path, str, bool]]:
    """Inbox entries that are not request files, sorted by name: (path, why, whether to move it
    to quarantine). Partial uploads stay (False); symlinks, folders and other non-regular
    entries go to quarantine (True). Dotfiles are not listed."""
    inbox_dir = Path(inbox_dir)
    if not inbox_dir.is_dir():
        return []
    out = []
    for p in sorted(inbox_dir.iterdir()):
        if p.name.startswith("."):
            continue
        if _is_partial(p.name):
            out.append((p, "a partial upload: left in the inbox until it is renamed", False))
            continue
        try:
            mode = p.lstat().st_mode
        except OSError:
            continue  # gone meanwhile
        if stat.S_ISLNK(mode):
            out.append((p, "a symbolic link: never followed; put the file itself in the inbox", True))
        elif stat.S_ISDIR(mode):
            out.append((p, "a folder: request files go directly into the inbox", True))
        elif not stat.S_ISREG(mode):
            out.append((p, "not a regular file (a pipe, socket or device)", True))
    return out


def unique_path(folder: str | Path, name: str, reason_file: bool = False) -> Path:
    """`folder/name`, or `folder/<stem>-2<suffix>`, `-3`, ... : the first that does not exist
    (with `reason_file`, neither may `<that>.reason.txt`). Never an existing path."""
    folder = Path(folder)
    stem, suffix = (name[: -len(Path(name).suffix)], Path(name).suffix) if Path(name).suffix else (name, "")
    k = 1
    while True:
        cand = folder / (name if k == 1 else f"{stem}-{k}{suffix}")
        taken = os.path.lexists(cand) or (reason_file and os.path.lexists(f"{cand}{REASON_SUFFIX}"))
        if not taken:
            return cand
        k += 1


def _move(src: Path, dst: Path) -> None:
    """Move without ever overwriting or deleting data (copy + rename across file systems).
    A symlink is moved as a link (never followed)."""
    if os.path.lexists(dst):
        raise DataError(f"{dst}: already exists; not overwriting an archived input")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dst)
    except OSError as err:
        if err.errno != errno.EXDEV:  # another file system: copy, rename, then unlink
            raise
        tmp = dst.with_name(f".{dst.name}.moving")
        if os.path.islink(src):
            os.symlink(os.readlink(src), tmp)
        elif os.path.isdir(src):
            raise DataError(f"{src}: a folder cannot be moved to another file system ({dst.parent})") from None
        else:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
        os.unlink(src)


def quarantine(path: str | Path, quarantine_dir: str | Path, why: str) -> Path | None:
    """Move `path` (a file, symlink or folder; never followed) into `quarantine_dir` under a
    unique name, with `<name>.reason.txt` (`why`, one line) next to it. Returns where it went,
    or None when it had vanished. Raises OSError or DataError when it cannot be moved (the
    reason file is then removed again)."""
    path, folder = Path(path), Path(quarantine_dir)
    if not os.path.lexists(path):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    dst = unique_path(folder, path.name, reason_file=True)
    reason = Path(f"{dst}{REASON_SUFFIX}")
    reason.write_text(one_line(f"{path.name}: {why}", 1000) + "\n", encoding="utf-8")
    try:
        _move(path, dst)
    except BaseException:
        reason.unlink(missing_ok=True)
        raise
    return dst


def copy_into_inbox(src: str | Path, inbox_dir: str | Path, name: str | None = None) -> Path:
    """Copy the request file `src` into the inbox as `name` (default: its own name), never
    overwriting: a pending file of the same name makes the copy `<stem>-2<suffix>` (then -3,
    ...). The copy appears whole, under its final name, in one step. Returns its path; an
    unreadable `src` raises DataError."""
    src, inbox_dir = Path(src), Path(inbox_dir)
    name = name or src.name
    inbox_dir.mkdir(parents=True, exist_ok=True)
    tmp = inbox_dir / f".{src.name}.copying-{os.getpid()}"  # a dotfile: never taken as input
    try:
        shutil.copyfile(src, tmp)
        shutil.copystat(src, tmp)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{src}: cannot be copied into the inbox ({err.strerror or err.__class__.__name__})") from None
    try:
        while True:
            dst = unique_path(inbox_dir, name)
            try:
                os.link(tmp, dst)  # fails if dst appeared meanwhile: never overwrites
                break
            except FileExistsError:
                continue
            except OSError:  # no hard links on this file system
                if os.path.lexists(dst):
                    continue
                os.rename(tmp, dst)
                break
    finally:
        tmp.unlink(missing_ok=True)
    return dst


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
    the batch's recorded inputs) instead of ingesting them a second time. A file that cannot
    be read is left for the ingest (which quarantines it).

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
        try:
            digest = sha256_file(p)
        except OSError:
            continue
        batch = recorded.get((p.name, digest))
        if batch is not None and not (batches_dir / batch / INPUT_DIR / p.name).exists():
            _move(p, batches_dir / batch / INPUT_DIR / p.name)
            done.append(f"{p.name} -> {batch}")
    return done
