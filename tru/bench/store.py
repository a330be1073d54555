"""The benchmarks' resumable results: one CSV row per finished cell, the whole file rewritten
atomically after each, so that a killed benchmark resumes after its last finished cell.

Several runs may share one file (two `--only` parts of the grid side by side): each write
holds an OS file lock beside the CSV (`<name>.lock`, released by the kernel if its holder
dies) and takes the file as it finds it for every cell but the one it records, so no run's rows
are lost, and no run's copy of a row overwrites what another recorded for it since (a row
filled in after the fact by one run while another goes on recording)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock

from tru.io import atomic_path


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold the lock of the file at `path` (`<name>.lock` beside it) while the body runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(path.name + ".lock"))):
        yield


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


@dataclass(frozen=True)
class ResultsStore:
    """The CSV of finished cells at `path`.

    `key`: the columns that name a cell (`seed` compared as an int); `line`: the progress line
    printed for a recorded row; `columns`: the file's columns in order (None: the rows' own, in
    the order first seen); `fill`: columns that files of earlier versions lack, inserted first
    with the value their rows take; `blank_as_none`: empty fields read as None (else NaN)."""

    path: Path
    key: tuple[str, ...]
    line: Callable[[dict], str]
    columns: tuple[str, ...] | None = None
    fill: dict[str, Any] = field(default_factory=dict)
    blank_as_none: bool = False

    def read(self) -> list[dict]:
        """The rows recorded so far, one dict per row (none while the file does not exist)."""
        if not self.path.is_file():  # nothing to lock, and reading creates nothing (`--list`)
            return []
        with file_lock(self.path):
            return self._read()

    def _read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        df = pd.read_csv(self.path)
        for i, (column, value) in enumerate(self.fill.items()):
            if column not in df.columns:
                df.insert(i, column, value)
        if self.blank_as_none:
            return df.astype(object).where(df.notna(), None).to_dict("records")
        return df.to_dict("records")

    def finished(self, rows: list[dict]) -> set[tuple]:
        """The keys of `rows`: the cells they hold."""
        return {self._cell(r) for r in rows}

    def _cell(self, row: dict) -> tuple:
        """A row's cell: `seed` as an int, an empty field (NaN as the CSV reads it) as None."""
        return tuple(int(row[k]) if k == "seed" else None if _blank(row[k]) else row[k] for k in self.key)

    def record(self, done: list[dict], row: dict) -> None:
        """Record a finished cell's `row`: `done` (the rows so far) becomes the file as it is now
        with `row` in its cell's place, is written at once (a killed run resumes after it) and
        the progress line is printed. The file's rows win over `done`'s for every other cell
        (another run may have recorded or filled them in meanwhile); cells of `done` the file
        lacks are kept. A cell recorded again keeps its place in the file."""
        cell = self._cell(row)
        with file_lock(self.path):
            on_file = self._read()
            filed = self.finished(on_file)
            rows = [row if self._cell(r) == cell else r for r in on_file]
            rows += [r for r in done if self._cell(r) != cell and self._cell(r) not in filed]
            done[:] = rows if cell in filed else [*rows, row]
            self._write(done)
        print(self.line(row), flush=True)

    def rewrite(self, rows: list[dict]) -> None:
        """Write `rows` as the whole file at once (rows measured after the fact filled in, rows
        set aside): it replaces what is there, so only a run that alone writes the file calls it."""
        with file_lock(self.path):
            self._write(rows)

    def _write(self, rows: list[dict]) -> None:
        columns = None if self.columns is None else list(self.columns)
        with atomic_path(self.path) as tmp:  # creates the folder
            pd.DataFrame(rows, columns=columns).to_csv(tmp, index=False)
