"""The suppression list: who and what was erased, kept so that no data generation brings them back.

The fetched source is an external system of record (a PyPI wheel, an MMRec folder of your
own): a new fetch, a new import or a restored backup would hold the erased subjects again.
Every fetch and featurize therefore re-applies the cumulative suppression list
(`lifecycle/suppression.tsv`, tracked by git): rows of an erased user, item or (user, item)
pair never reach the raw snapshot kept on disk, the dataset folder or anything derived from
them.

The list holds keyed pseudonyms only (tru.requests.pseudonym: HMAC-SHA256 of `kind US
user_id US item_id` under the pseudonymisation key), the same `subject` the ledger records
for each request. Without the key nobody can tell from it whom it names; with the key, a row
of the source is dropped when the pseudonym of its user, its item or its pair is listed.

`tru consolidate` appends the subjects of every erased request of the batches it folds in,
with the data generation it starts (1, 2, ...); generation 0 is the list with no row (the
first fetch of a fresh clone). The file is written atomically and its bytes depend only on
its rows (sorted): the same erasures give the same file, so DVC's hash of it is stable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tru.errors import DataError
from tru.io import atomic_path
from tru.requests.pseudonym import load_key, subject
from tru.requests.schema import KINDS

COLUMNS = ("kind", "subject", "generation")
HEADER = "\t".join(COLUMNS) + "\n"


@dataclass(frozen=True)
class Suppression:
    """The cumulative suppression list: kind -> set of subject pseudonyms, and per subject the
    generation that first left it out."""

    rows: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(COLUMNS)))

    @property
    def generation(self) -> int:
        """The newest generation in the list (0: empty)."""
        return int(self.rows["generation"].max()) if len(self.rows) else 0

    def __len__(self) -> int:
        return len(self.rows)

    def subjects(self, kind: str) -> set[str]:
        return set(self.rows.loc[self.rows["kind"] == kind, "subject"])

    def counts(self) -> dict[str, int]:
        """Subjects per kind (every kind, zero included)."""
        return {k: int((self.rows["kind"] == k).sum()) for k in KINDS}

    def mask(self, key: bytes | None, users: Iterable | None, items: Iterable | None) -> np.ndarray:
        """Per row of the parallel raw-id sequences `users` and `items` (either may be None:
        a table of users only, or of items only): True where the row belongs to a suppressed
        user, item or (user, item) pair. Each distinct id (and pair) is hashed once."""
        u = None if users is None else pd.Series(list(users), dtype=object).astype(str)
        i = None if items is None else pd.Series(list(items), dtype=object).astype(str)
        n = len(u) if u is not None else len(i) if i is not None else 0
        out = np.zeros(n, bool)
        if not len(self.rows) or n == 0:
            return out
        if key is None:
            raise DataError("the suppression list is not empty: its pseudonyms need the pseudonymisation key")

        def hit(values: pd.Series, kind: str, make) -> np.ndarray:
            listed = self.subjects(kind)
            if not listed:
                return np.zeros(len(values), bool)
            uniq = values.unique()
            names = {v: make(v) in listed for v in uniq}
            return values.map(names).to_numpy(bool)

        if u is not None:
            out |= hit(u, "user", lambda v: subject(key, "user", v, None))
        if i is not None:
            out |= hit(i, "item", lambda v: subject(key, "item", None, v))
        if u is not None and i is not None and self.subjects("interaction"):
            pairs = u + "\x1f" + i
            out |= hit(pairs, "interaction", lambda v: subject(key, "interaction", *v.split("\x1f", 1)))
        return out


def read_suppression(path: str | Path) -> Suppression:
    """The list at `path`; an absent file is the empty list (generation 0). DataError on a
    malformed file (missing columns, an unknown kind, a generation below 1)."""
    path = Path(path)
    if not path.is_file():
        return Suppression()
    try:
        df = pd.read_csv(path, sep="\t", dtype={"kind": str, "subject": str}, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as err:
        raise DataError(f"{path}: not a suppression list ({err})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})")
    bad = sorted(set(df["kind"]) - set(KINDS))
    if bad:
        raise DataError(f"{path}: unknown kind(s) {', '.join(bad)} (expected one of {', '.join(KINDS)})")
    gen = pd.to_numeric(df["generation"], errors="coerce")
    if gen.isna().any() or (gen < 1).any():
        raise DataError(f"{path}: every generation must be an integer of at least 1")
    df = df.assign(generation=gen.astype(int))[list(COLUMNS)]
    return Suppression(df.reset_index(drop=True))


def suppression_key(sup: Suppression) -> bytes | None:
    """The pseudonymisation key when the list has rows (ConfigError from load_key when it is
    not set), None for the empty list: a fresh clone fetches without any key."""
    return load_key() if len(sup) else None


def extend(sup: Suppression, rows: pd.DataFrame, generation: int) -> Suppression:
    """`sup` plus the (kind, subject) rows not yet listed, recorded under `generation`."""
    new = rows[["kind", "subject"]].dropna().drop_duplicates()
    known = set(zip(sup.rows["kind"], sup.rows["subject"], strict=True))
    new = new[[(k, s) not in known for k, s in zip(new["kind"], new["subject"], strict=True)]]
    out = pd.concat([sup.rows, new.assign(generation=int(generation))], ignore_index=True)
    return Suppression(out[list(COLUMNS)].astype({"generation": int}))


def write_suppression(sup: Suppression, path: str | Path) -> None:
    """Write the list atomically, rows sorted (generation, kind, subject): same rows, same bytes."""
    rows = sup.rows.sort_values(["generation", "kind", "subject"]).astype({"generation": int})
    with atomic_path(path) as tmp:
        tmp.write_text(HEADER + "".join(f"{k}\t{s}\t{g}\n" for k, s, g in rows.itertuples(index=False)))
