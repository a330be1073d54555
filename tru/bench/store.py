"""The benchmarks' resumable results: one CSV row per finished cell, the whole file rewritten
atomically after each, so that a killed benchmark resumes after its last finished cell."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tru.io import atomic_path


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
        return {tuple(int(r[k]) if k == "seed" else r[k] for k in self.key) for r in rows}

    def record(self, done: list[dict], row: dict) -> None:
        """Append a finished cell's `row` to `done` (the rows so far), print its progress line and
        write every row of `done` to the file at once: a killed run resumes after it."""
        done.append(row)
        print(self.line(row), flush=True)
        columns = None if self.columns is None else list(self.columns)
        with atomic_path(self.path) as tmp:  # creates the folder
            pd.DataFrame(done, columns=columns).to_csv(tmp, index=False)

    def rewrite(self, rows: list[dict]) -> None:
        """Write `rows` as the whole file at once (rows measured after the fact filled in)."""
        columns = None if self.columns is None else list(self.columns)
        with atomic_path(self.path) as tmp:
            pd.DataFrame(rows, columns=columns).to_csv(tmp, index=False)
