"""Train / valid / test split of an MMRec folder, written as a split folder.

Two recipes:
- the folder's .inter has x_label: used as given (0 train, 1 valid, 2 test); no rating
  filter, no de-duplication, no fraction check: the dataset's own split is authoritative
  (this is how MMRec's Amazon sets are published). A given split that repeats a
  (user, item) pair or holds out users with no training rows fails validation;
- otherwise: implicit feedback (rating >= min_rating), repeated (user, item) pairs reduced
  to their earliest occurrence, then a per-user chronological split. Each user's rows are
  ordered by timestamp, ties broken by a seeded random permutation; with n rows,
  n_train = max(1, round(f_train * n)), n_valid = min(round(f_valid * n), n - n_train),
  the rest is test. round() is Python's (half to even), so a user with 5 rows gets
  4/0/1 and one with 2 rows 2/0/0; users with a single row are train-only.

Shadow pairs (`split.shadow_share`, either recipe): after validation, a random (not
chronological) share of each user's training rows is moved to `shadow.parquet`: at least one
per user who keeps another training row, round(share * n_train) of a user with more, drawn
seeded. No model trains on them (not the base model, a retrain or any erasure method): they
are what "never seen" looks like for the same users and items, the comparison of the stop rule
and the gate (a forgotten pair of an exact retrain is exchangeable with a shadow pair of its
user or item). The canary's fake users, appended after, have none.

Output (see tru/data/dataset.py for the reader): train/valid/test/shadow.parquet with int64
columns user, item, timestamp, sorted by (user, timestamp, item), and split.json.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tru.config import SplitParams
from tru.data.mmrec import FEAT_SUFFIX, MMRecFolder
from tru.data.validate import SPLIT_NAMES, validate_split
from tru.errors import DataError, ValidationFailed
from tru.io import atomic_path, read_json, sha256_file, write_json

COLUMNS = ("user", "item", "timestamp")


def _given_split(inter: pd.DataFrame) -> dict[str, pd.DataFrame]:
    frame = pd.DataFrame(
        {"user": inter["userID"], "item": inter["itemID"], "timestamp": inter["timestamp"], "label": inter["x_label"]}
    )
    return {s: frame.loc[frame["label"] == k, list(COLUMNS)] for k, s in enumerate(SPLIT_NAMES)}


def _chronological_split(
    inter: pd.DataFrame, params: SplitParams, seed: int
) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    positive = inter[inter["rating"] >= params.min_rating]
    frame = pd.DataFrame(
        {
            "user": positive["userID"].to_numpy(np.int64),
            "item": positive["itemID"].to_numpy(np.int64),
            "timestamp": positive["timestamp"].to_numpy(np.int64),
        }
    )
    rng = np.random.default_rng(seed)
    tie = rng.permutation(len(frame))
    order = np.lexsort((tie, frame["timestamp"].to_numpy(), frame["user"].to_numpy()))
    frame = frame.iloc[order].reset_index(drop=True)
    first = ~frame.duplicated(["user", "item"], keep="first")  # earliest occurrence of a repeated pair
    n_duplicates = int((~first).sum())
    frame = frame[first.to_numpy()].reset_index(drop=True)

    by_user = frame.groupby("user", sort=False)
    rank = by_user.cumcount().to_numpy()
    n = by_user["user"].transform("size").to_numpy()
    f_train, f_valid, _ = params.fractions
    n_train = np.maximum(1, np.round(f_train * n)).astype(np.int64)
    n_valid = np.minimum(np.round(f_valid * n).astype(np.int64), n - n_train)
    label = np.where(rank < n_train, 0, np.where(rank < n_train + n_valid, 1, 2))
    parts = {s: frame.loc[label == k, list(COLUMNS)] for k, s in enumerate(SPLIT_NAMES)}
    stats = {
        "input_rows": len(inter),
        "below_min_rating": len(inter) - len(positive),
        "duplicate_pairs_dropped": n_duplicates,
    }
    return parts, stats


def _duplicate_rows(inter: pd.DataFrame, path: Path, limit: int = 5) -> str:
    """The first `limit` (userID, itemID) pairs that `inter` (a .inter file as read, one row per
    data line) repeats, each with its line numbers in `path` (the header is line 1), timestamps
    and x_label; "" when no pair repeats."""
    key = ["userID", "itemID"]
    repeated = inter[inter.duplicated(key, keep=False)]
    if repeated.empty:
        return ""
    pairs = repeated[key].drop_duplicates()  # in order of first occurrence
    shown = []
    for user, item in pairs.head(limit).itertuples(index=False):
        rows = repeated[(repeated["userID"] == user) & (repeated["itemID"] == item)]
        lines = ", ".join(
            f"line {int(i) + 2} (timestamp {int(r['timestamp'])}"
            + (f", x_label {int(r['x_label'])}" if "x_label" in r else "")
            + ")"
            for i, r in rows.iterrows()
        )
        shown.append(f"userID {int(user)}, itemID {int(item)} on {lines}")
    more = f" (the first {limit} of {len(pairs)})" if len(pairs) > limit else ""
    return f"{path} repeats {len(pairs)} (userID, itemID) pair(s) on {len(repeated)} lines{more}: " + "; ".join(shown)


def shadow_rows(train: pd.DataFrame, share: float, seed: int) -> np.ndarray:
    """Boolean mask of the rows of `train` held out as shadow pairs (module docstring): per user
    with n >= 2 training rows, max(1, round(share * n)) of them (at most n - 1), drawn at random
    with a generator of its own (the split's other draws are unchanged by the share)."""
    mask = np.zeros(len(train), bool)
    if share <= 0 or len(train) == 0:
        return mask
    rng = np.random.default_rng([seed, 0x5AD0])
    users = train["user"].to_numpy()
    order = np.lexsort((rng.random(len(train)), users))  # each user's rows in random order
    sorted_users = users[order]
    _, first, inverse, counts = np.unique(sorted_users, return_index=True, return_inverse=True, return_counts=True)
    position = np.arange(len(train)) - first[inverse]
    n = counts[inverse]
    take = np.where(n >= 2, np.minimum(np.maximum(1, np.round(share * n)), n - 1), 0)
    mask[order[position < take]] = True
    return mask


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    table = pa.table({c: pa.array(frame[c].to_numpy(np.int64), type=pa.int64()) for c in COLUMNS})
    pq.write_table(table, path, compression="zstd", write_statistics=True)


def data_generation(dataset_dir: Path) -> int:
    """The data generation a dataset folder was built in: its manifest's `redaction` record
    (tru.lifecycle.redact), 0 without one (nothing suppressed yet)."""
    path = Path(dataset_dir) / "manifest.json"
    if not path.is_file():
        return 0
    return int((read_json(path).get("redaction") or {}).get("generation", 0))


def make_split(
    folder: MMRecFolder, params: SplitParams, seed: int, out_dir: Path, dataset_dir: Path, canary=None
) -> dict:
    """Split `folder` (see the module docstring), validate, write `out_dir`; return split.json.

    With `canary` (params.canary, enabled) the backdoor canary's fake users are appended to
    the training split after validation (tru/audit/canary.py) and described in split.json."""
    inter = folder.interactions
    if folder.has_split:
        parts = _given_split(inter)
        stats = {"input_rows": len(inter)}
        recipe: dict = {"method": "x_label"}
        target = None
    else:
        parts, stats = _chronological_split(inter, params, seed)
        recipe = {
            "method": "chronological",
            "min_rating": params.min_rating,
            "fractions": list(params.fractions),
            "seed": seed,
        }
        target = params.fractions
    parts = {
        s: df.sort_values(["user", "timestamp", "item"], kind="stable").reset_index(drop=True)
        for s, df in parts.items()
    }
    if len(parts["train"]) == 0:
        raise DataError(f"{folder.path}: the split leaves no training interactions (check split.min_rating)")

    limits = (folder.n_users, folder.n_items, target, params.fraction_tolerance)
    try:
        validate_split(parts["train"], parts["valid"], parts["test"], *limits)
    except ValidationFailed as err:
        # a given split keeps every row: name the repeated pairs where the file has them
        where = _duplicate_rows(inter, folder.path / f"{folder.name}.inter") if folder.has_split else ""
        if where:
            raise ValidationFailed(f"{err}; {where}") from None
        raise

    shadow = shadow_rows(parts["train"], params.shadow_share, seed)
    parts["shadow"] = parts["train"][shadow].reset_index(drop=True)
    parts["train"] = parts["train"][~shadow].reset_index(drop=True)
    recipe["shadow_share"] = params.shadow_share

    n_users = int(folder.n_users)
    canary_meta = None
    if canary is not None and canary.enabled:
        from tru.audit.canary import inject  # why: it imports torch; a split without a canary never needs it

        generation = data_generation(folder.path)
        parts["train"], canary_meta = inject(parts["train"], n_users, int(folder.n_items), canary, seed, generation)
        n_users += len(canary_meta["fake_users"])
    total = sum(len(df) for df in parts.values())
    inputs = [folder.path / f"{folder.name}.inter"] + [
        folder.path / f"{m}{FEAT_SUFFIX}" for m in sorted(folder.features)
    ]
    meta = {
        "name": folder.name,
        "n_users": n_users,
        "n_items": int(folder.n_items),
        "modalities": {m: int(a.shape[1]) for m, a in folder.features.items()},
        "dataset_dir": Path(dataset_dir).as_posix(),
        "counts": {s: len(df) for s, df in parts.items()},
        "users": {s: int(df["user"].nunique()) for s, df in parts.items()},
        "fractions": {s: round(len(df) / total, 6) for s, df in parts.items()},
        "recipe": recipe,
        "filtering": stats,
        "sha256": {p.name: sha256_file(p) for p in inputs},
    }
    if canary_meta is not None:
        meta["canary"] = canary_meta
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        for s, df in parts.items():
            _write_parquet(df, tmp / f"{s}.parquet")
        write_json(tmp / "split.json", meta)
    return meta
