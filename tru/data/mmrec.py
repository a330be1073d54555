"""The MMRec dataset folder: the one on-disk format every source is turned into.

A folder `<dir>/` holds
- `<name>.inter`: tab-separated, header `userID itemID rating timestamp [x_label]`,
  0-based integer ids (x_label: 0 train, 1 valid, 2 test, as MMRec writes it);
- `<modality>_feat.npy`: float32 [n_items, dim] per modality, row = itemID
  (`image_feat.npy`, `text_feat.npy`, or any other `*_feat.npy`);
- optional `item_map.tsv` (itemID, raw_id, title) and `user_map.tsv` (userID, raw_id):
  the dataset's own ids, used to resolve deletion requests;
- optional `manifest.json` written by the stage that built the folder.

The item count comes from the item table (item_map.tsv) or the feature rows, never from
the largest id seen in interactions: items nobody interacted with are still items.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tru.errors import DataError

INTER_COLUMNS = ["userID", "itemID", "rating", "timestamp"]
FEAT_SUFFIX = "_feat.npy"


@dataclass
class MMRecFolder:
    """An MMRec folder in memory (see the module docstring); `has_split` says whether the
    interactions carry x_label. `load_folder` reads one."""

    path: Path
    name: str
    interactions: pd.DataFrame  # userID, itemID, rating, timestamp[, x_label]
    features: dict[str, np.ndarray]  # modality -> [n_items, dim] float32
    n_users: int
    n_items: int
    item_map: pd.DataFrame | None = None
    user_map: pd.DataFrame | None = None
    has_split: bool = field(init=False)

    def __post_init__(self) -> None:
        self.has_split = "x_label" in self.interactions.columns


def find_inter_file(path: Path, name: str | None = None) -> Path:
    """The folder's `<name>.inter`, else its only `*.inter` file; DataError when not exactly one."""
    if name is not None and (path / f"{name}.inter").is_file():
        return path / f"{name}.inter"
    found = sorted(path.glob("*.inter"))
    if len(found) != 1:
        what = "no .inter file" if not found else f"{len(found)} .inter files ({', '.join(p.name for p in found)})"
        raise DataError(f"{path}: expected exactly one <name>.inter file, found {what}")
    return found[0]


def read_inter(path: Path) -> pd.DataFrame:
    """A .inter file as a frame (userID, itemID, rating, timestamp[, x_label]), checked: ids
    non-negative integers, no empty values, x_label in 0-2. DataError otherwise."""
    try:
        df = pd.read_csv(path, sep="\t", low_memory=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{path}: cannot be read as a tab-separated .inter file ({err.__class__.__name__})") from None
    missing = [c for c in INTER_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(map(str, df.columns))})")
    cols = INTER_COLUMNS + (["x_label"] if "x_label" in df.columns else [])
    df = df[cols]
    for c in cols:
        if not pd.api.types.is_numeric_dtype(df[c]) or df[c].isna().any():
            raise DataError(f"{path}: column {c} must be numeric with no empty values")
    for c in ("userID", "itemID"):
        if (df[c] < 0).any() or (df[c] != df[c].round()).any():
            raise DataError(f"{path}: column {c} must hold non-negative integer ids")
    df = df.astype({"userID": "int64", "itemID": "int64", "rating": "float64", "timestamp": "int64"})
    if "x_label" in df.columns:
        bad = ~df["x_label"].isin([0, 1, 2])
        if bad.any():
            raise DataError(f"{path}: x_label must be 0 (train), 1 (valid) or 2 (test); {int(bad.sum())} rows are not")
        df["x_label"] = df["x_label"].astype("int64")
    return df.reset_index(drop=True)


def read_features(path: Path) -> dict[str, np.ndarray]:
    """Modality -> float32 [n_items, dim] matrix of every `*_feat.npy` in the folder `path`
    (sorted by name); DataError for an unreadable, non-2-D or non-finite matrix."""
    feats = {}
    for p in sorted(path.glob(f"*{FEAT_SUFFIX}")):
        modality = p.name[: -len(FEAT_SUFFIX)]
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise DataError(f"{p}: not a readable .npy array ({err})") from None
        if arr.ndim != 2:
            raise DataError(f"{p}: feature matrix must be 2-D [n_items, dim], got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise DataError(f"{p}: feature matrix holds NaN or infinite values")
        feats[modality] = arr.astype(np.float32, copy=False)
    return feats


def load_folder(path: str | Path, name: str | None = None, require_features: bool = True) -> MMRecFolder:
    """Read and check the MMRec folder `path` (interactions, features, id maps); the item and
    user counts come from the maps or feature rows (module docstring). DataError when invalid."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: dataset folder not found")
    inter_path = find_inter_file(path, name)
    name = inter_path.stem
    inter = read_inter(inter_path)
    features = read_features(path)
    if require_features and not features:
        raise DataError(f"{path}: no *_feat.npy feature file (a multimodal dataset needs at least one modality)")

    item_map = user_map = None
    if (path / "item_map.tsv").is_file():
        item_map = pd.read_csv(path / "item_map.tsv", sep="\t", dtype={"raw_id": str}, keep_default_na=False)
    if (path / "user_map.tsv").is_file():
        user_map = pd.read_csv(path / "user_map.tsv", sep="\t", dtype={"raw_id": str}, keep_default_na=False)

    rows = {m: int(a.shape[0]) for m, a in features.items()}
    if item_map is not None:
        n_items = len(item_map)
        for modality, n in rows.items():
            if n != n_items:
                raise DataError(
                    f"{path / (modality + FEAT_SUFFIX)}: has {n} rows but item_map.tsv lists {n_items} items"
                )
    elif features:
        if len(set(rows.values())) > 1:
            listing = ", ".join(f"{m}{FEAT_SUFFIX} has {n} rows" for m, n in rows.items())
            raise DataError(f"{path}: feature files disagree on the item count ({listing})")
        n_items = next(iter(rows.values()))
    else:
        n_items = int(inter["itemID"].max()) + 1
    n_users = len(user_map) if user_map is not None else int(inter["userID"].max()) + 1

    if int(inter["itemID"].max()) >= n_items:
        raise DataError(f"{inter_path}: itemID {int(inter['itemID'].max())} is out of range for {n_items} items")
    if int(inter["userID"].max()) >= n_users:
        raise DataError(f"{inter_path}: userID {int(inter['userID'].max())} is out of range for {n_users} users")
    return MMRecFolder(path, name, inter, features, n_users, n_items, item_map, user_map)


def write_folder(
    path: str | Path,
    name: str,
    interactions: pd.DataFrame,
    features: dict[str, np.ndarray],
    item_map: pd.DataFrame | None = None,
    user_map: pd.DataFrame | None = None,
) -> None:
    """Write an MMRec folder at `path` (callers wrap this in tru.io.atomic_path)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cols = INTER_COLUMNS + (["x_label"] if "x_label" in interactions.columns else [])
    interactions[cols].to_csv(path / f"{name}.inter", sep="\t", index=False, lineterminator="\n")
    for modality, arr in features.items():
        np.save(path / f"{modality}{FEAT_SUFFIX}", np.ascontiguousarray(arr, dtype=np.float32))
    if item_map is not None:
        item_map.to_csv(path / "item_map.tsv", sep="\t", index=False, lineterminator="\n")
    if user_map is not None:
        user_map.to_csv(path / "user_map.tsv", sep="\t", index=False, lineterminator="\n")
