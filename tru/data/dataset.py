"""The split dataset in memory: what training, evaluation and unlearning read.

On disk (written by `tru split`, see tru/data/split.py) a split folder holds
`train.parquet`, `valid.parquet`, `test.parquet`, `shadow.parquet` (columns user, item,
timestamp; 0-based indices into the dataset folder's ids; shadow: pairs no model trains on) and
`split.json` (counts, n_users, n_items,
modality dims, the dataset folder it came from and the hashes of its inputs).
Features are read from the dataset folder named in split.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tru.data.mmrec import read_features
from tru.errors import DataError
from tru.io import read_json

SPLITS = ("train", "valid", "test")


@dataclass
class InteractionData:
    """A split in memory: (user, item) index pairs per split, item features per modality, and
    the users and items deleted so far (`load_split` builds it from a split or sets folder)."""

    name: str
    n_users: int
    n_items: int
    train: np.ndarray  # [n, 2] int64 (user, item)
    valid: np.ndarray
    test: np.ndarray
    features: dict[str, np.ndarray]  # modality -> [n_items, dim] float32
    deleted_users: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    deleted_items: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # shadow pairs (tru/data/split.py): never trained on; the stop rule's and gate's comparison
    shadow: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))

    @property
    def candidates(self) -> np.ndarray:
        """Items that may be recommended: every item but the deleted ones."""
        return np.setdiff1d(np.arange(self.n_items), self.deleted_items)

    @property
    def active_items(self) -> np.ndarray | None:
        """Boolean mask of non-deleted items, or None when nothing was deleted."""
        if len(self.deleted_items) == 0:
            return None
        mask = np.ones(self.n_items, dtype=bool)
        mask[self.deleted_items] = False
        return mask

    @property
    def modalities(self) -> list[str]:
        """The modality names, in the order of `features`."""
        return list(self.features)

    def pairs(self, split: str) -> np.ndarray:
        """The [n, 2] (user, item) pairs of `split` (train, valid, test or shadow); ValueError otherwise."""
        if split not in SPLITS + ("shadow",):
            raise ValueError(f"unknown split {split!r}")
        return getattr(self, split)

    def per_user(self, split: str) -> list[np.ndarray]:
        """Item indices per user (row u = items of user u in `split`, sorted)."""
        return group_by_user(self.pairs(split), self.n_users)


def group_by_user(pairs: np.ndarray, n_users: int) -> list[np.ndarray]:
    """[n, 2] (user, item) pairs in; per user 0..n_users-1 the sorted array of its items out."""
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    sorted_pairs = pairs[order]
    bounds = np.searchsorted(sorted_pairs[:, 0], np.arange(n_users + 1))
    return [sorted_pairs[bounds[u] : bounds[u + 1], 1] for u in range(n_users)]


def _read_pairs(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: split file not found (run `tru split` first)")
    df = pd.read_parquet(path, columns=["user", "item"])
    return df.to_numpy(dtype=np.int64).reshape(-1, 2)


def load_split(split_dir: str | Path, dataset_dir: str | Path | None = None) -> InteractionData:
    """Read a split (or sets) folder and the features of its dataset folder (`dataset_dir`,
    default: the one split.json names); DataError when a file is missing or disagrees."""
    split_dir = Path(split_dir)
    meta_path = split_dir / "split.json"
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: not found (run `tru split` first)")
    meta = read_json(meta_path)
    ds_dir = Path(dataset_dir) if dataset_dir is not None else Path(meta["dataset_dir"])
    features = read_features(ds_dir)
    for modality, arr in features.items():
        if arr.shape[0] != meta["n_items"]:
            raise DataError(
                f"{ds_dir / (modality + '_feat.npy')}: has {arr.shape[0]} rows, the split has {meta['n_items']} items"
            )
    parts = {s: _read_pairs(split_dir / f"{s}.parquet") for s in SPLITS}
    # a split made before shadow pairs existed (or with split.shadow_share 0) has none
    if (split_dir / "shadow.parquet").is_file():
        parts["shadow"] = _read_pairs(split_dir / "shadow.parquet")
    return InteractionData(
        meta["name"],
        int(meta["n_users"]),
        int(meta["n_items"]),
        features=features,
        deleted_users=np.asarray(meta.get("deleted_users", []), dtype=np.int64),
        deleted_items=np.asarray(meta.get("deleted_items", []), dtype=np.int64),
        **parts,
    )


def read_pairs(path: str | Path) -> np.ndarray:
    """(user, item) pairs of one parquet file of a split or sets folder (forget.parquet, ...)."""
    return _read_pairs(Path(path))
