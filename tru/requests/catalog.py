"""What exists in the dataset, as deletion requests name it: raw user and item ids, and the
(user, item) interactions, resolved to dataset indices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tru.errors import DataError
from tru.io import read_json
from tru.requests.ledger import dataset_identity


class Catalog:
    """What exists in the dataset: raw user ids, raw item ids (position = dataset index) and
    the (user, item) interaction pairs of all splits. Build it from the original dataset,
    not from a retain split, so every earlier request stays resolvable.

    In: the raw user ids, the raw item ids (each unique) and an (n, 2) array of (user index,
    item index) pairs; raises DataError on a duplicate raw id or a pair out of range."""

    def __init__(self, user_ids: Sequence[str], item_ids: Sequence[str], pairs: np.ndarray):
        self.users = self._index(user_ids, "user")
        self.items = self._index(item_ids, "item")
        self.n_users, self.n_items = len(self.users), len(self.items)
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        if len(pairs) and (
            (pairs.min(0) < 0).any() or pairs[:, 0].max() >= self.n_users or pairs[:, 1].max() >= self.n_items
        ):
            raise DataError(
                f"catalog: interaction pairs out of range for {self.n_users} users and {self.n_items} items"
            )
        self._codes = np.unique(pairs[:, 0] * max(self.n_items, 1) + pairs[:, 1])
        # the dataset the ids resolve in (tru.requests.ledger.dataset_identity): the ledger records it
        self.dataset: dict | None = None

    @staticmethod
    def _index(ids: Sequence[str], what: str) -> pd.Index:
        values = [str(v) for v in ids]
        index = pd.Index(values, dtype=object)
        if not index.is_unique:
            dup = int(index.duplicated().sum())
            raise DataError(f"catalog: {dup} {what} raw id(s) appear more than once in the {what} map")
        return index

    @classmethod
    def from_dataset(cls, dataset_dir: str | Path, split_dir: str | Path) -> Catalog:
        """From a dataset folder's user_map.tsv / item_map.tsv (raw id -> index; without a
        map the raw id is the index as a string, as in plain MMRec folders) and the split's
        train/valid/test pairs."""
        dataset_dir, split_dir = Path(dataset_dir), Path(split_dir)
        meta_path = split_dir / "split.json"
        if not meta_path.is_file():
            raise DataError(f"{meta_path}: not found (run `tru split` first)")
        meta = read_json(meta_path)
        n_users, n_items = int(meta["n_users"]), int(meta["n_items"])
        canary = meta.get("canary") or {}  # the backdoor canary's fake users follow the real ones
        fake = list(canary.get("raw_ids", []))
        user_ids = cls._read_map(dataset_dir / "user_map.tsv", "userID", n_users - len(fake)) + fake
        item_ids = cls._read_map(dataset_dir / "item_map.tsv", "itemID", n_items)
        parts = []
        for split in ("train", "valid", "test"):
            path = split_dir / f"{split}.parquet"
            if not path.is_file():
                raise DataError(f"{path}: split file not found (run `tru split` first)")
            parts.append(pd.read_parquet(path, columns=["user", "item"]).to_numpy(dtype=np.int64).reshape(-1, 2))
        catalog = cls(user_ids, item_ids, np.concatenate(parts))
        catalog.dataset = dataset_identity(meta)
        return catalog

    @staticmethod
    def _read_map(path: Path, id_col: str, n: int) -> list[str]:
        if not path.is_file():
            return [str(i) for i in range(n)]
        df = pd.read_csv(path, sep="\t", dtype={"raw_id": str}, keep_default_na=False)
        if id_col not in df.columns or "raw_id" not in df.columns:
            raise DataError(f"{path}: needs columns {id_col} and raw_id")
        if len(df) != n or not np.array_equal(np.sort(df[id_col].to_numpy()), np.arange(n)):
            raise DataError(f"{path}: must map exactly the ids 0..{n - 1} of the split ({len(df)} rows)")
        return df.sort_values(id_col)["raw_id"].astype(str).tolist()

    def user_index(self, raw: Sequence[str | None]) -> np.ndarray:
        """Dataset index of each raw user id, -1 where unknown or missing."""
        return self.users.get_indexer(pd.Index(list(raw), dtype=object)).astype(np.int64)

    def item_index(self, raw: Sequence[str | None]) -> np.ndarray:
        """Dataset index of each raw item id, -1 where unknown or missing."""
        return self.items.get_indexer(pd.Index(list(raw), dtype=object)).astype(np.int64)

    def has_pair(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (user index, item index) pair is an interaction of the dataset."""
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        ok = (users >= 0) & (items >= 0)
        codes = np.where(ok, users * max(self.n_items, 1) + items, -1)
        pos = np.searchsorted(self._codes, codes)
        pos = np.minimum(pos, max(len(self._codes) - 1, 0))
        found = self._codes[pos] == codes if len(self._codes) else np.zeros(len(codes), bool)
        return ok & found
