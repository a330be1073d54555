"""Forget and retain sets of a batch, cumulative over batches.

A batch's sets folder has the layout of a split folder (so `tru.data.dataset.load_split`
reads it unchanged) plus what the erasure needs:

- `train.parquet`: the retain set D_r (training interactions minus everything erased so far);
- `valid.parquet`, `test.parquet`: evaluation rows of retained users and items;
- `forget.parquet`: D_f, the training interactions this batch erases;
- `heldout.parquet`: the valid/test rows of users and items deleted in this batch: they leave
  evaluation and become the held-out comparison of the membership audit;
- `shadow.parquet`: the shadow pairs (tru/data/split.py) of retained users and items, and
  `heldout_shadow.parquet`: those of the users, items and pairs deleted in this batch: the
  never-trained comparison of the stop rule and the gate;
- `split.json`: the split metadata, plus `batch` (id, previous sets, counts) and the
  cumulative `deleted_users` and `deleted_items` (deleted items leave the candidate set).

Rules: a user request forgets every retained training interaction of the user; an item
request every retained interaction with the item; an interaction request that pair. The
same target requested twice is erased once. Batch N starts from batch N-1's sets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tru.data.validate import import_gx, run_expectations
from tru.errors import DataError, ValidationFailed
from tru.io import atomic_path, read_json, sha256_file, write_json
from tru.requests.ledger import check_same_dataset, dataset_identity

COLUMNS = ("user", "item", "timestamp")


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: not found")
    return pd.read_parquet(path, columns=list(COLUMNS))


def _write(frame: pd.DataFrame, path: Path) -> None:
    frame = frame.sort_values(["user", "timestamp", "item"], kind="stable")
    table = pa.table({c: pa.array(frame[c].to_numpy(np.int64), type=pa.int64()) for c in COLUMNS})
    pq.write_table(table, path, compression="zstd", write_statistics=True)


def _keys(frame: pd.DataFrame, n_items: int) -> np.ndarray:
    return frame["user"].to_numpy(np.int64) * n_items + frame["item"].to_numpy(np.int64)


def targets_from_ledger(requests: pd.DataFrame) -> dict[str, np.ndarray]:
    """Accepted requests of a batch -> de-duplicated target users, items and (user, item) pairs."""
    acc = requests[requests["status"] == "accepted"]
    users = np.unique(acc.loc[acc["kind"] == "user", "user_index"].to_numpy(np.int64))
    items = np.unique(acc.loc[acc["kind"] == "item", "item_index"].to_numpy(np.int64))
    inter = acc.loc[acc["kind"] == "interaction", ["user_index", "item_index"]].to_numpy(np.int64).reshape(-1, 2)
    pairs = np.unique(inter, axis=0) if len(inter) else inter
    if (users < 0).any() or (items < 0).any() or (pairs < 0).any():
        raise DataError("an accepted request has an unresolved id (index -1): the ledger is inconsistent")
    return {"users": users, "items": items, "pairs": pairs}


def build_sets(
    prior_dir: str | Path, requests: pd.DataFrame, batch_id: str, out_dir: str | Path, dataset: dict | None = None
) -> dict:
    """Apply one batch's accepted requests to the prior sets (a split folder or the previous
    batch's sets folder) and write this batch's sets folder; returns its split.json.

    `dataset`: the dataset the ledger resolved the requests' ids against (the ledger's
    metadata); DataError, before anything is written, when the prior was made from another."""
    prior_dir, out_dir = Path(prior_dir), Path(out_dir)
    meta = read_json(prior_dir / "split.json")
    check_same_dataset(batch_id, dataset, dataset_identity(meta), f"its sets are not rebuilt from {prior_dir}")
    n_items = int(meta["n_items"])
    train, valid, test = (_read(prior_dir / f"{s}.parquet") for s in ("train", "valid", "test"))
    # a split made before shadow pairs existed has none
    shadow_path = prior_dir / "shadow.parquet"
    shadow = _read(shadow_path) if shadow_path.is_file() else train.iloc[:0]
    t = targets_from_ledger(requests)
    pair_keys = t["pairs"][:, 0] * n_items + t["pairs"][:, 1] if len(t["pairs"]) else np.zeros(0, np.int64)

    def hit(frame: pd.DataFrame) -> np.ndarray:
        return (
            frame["user"].isin(t["users"]).to_numpy()
            | frame["item"].isin(t["items"]).to_numpy()
            | np.isin(_keys(frame, n_items), pair_keys)
        )

    f_mask = hit(train)
    forget, retain = train[f_mask], train[~f_mask]
    v_mask, s_mask = hit(valid), hit(test)
    heldout = pd.concat([valid[v_mask], test[s_mask]], ignore_index=True)
    valid, test = valid[~v_mask], test[~s_mask]
    h_mask = hit(shadow)
    heldout_shadow, shadow = shadow[h_mask], shadow[~h_mask]

    validate_sets(train, forget, retain, n_items)

    deleted_users = sorted(set(meta.get("deleted_users", [])) | set(t["users"].tolist()))
    deleted_items = sorted(set(meta.get("deleted_items", [])) | set(t["items"].tolist()))
    out_meta = {k: v for k, v in meta.items() if k not in ("batch",)}
    out_meta.update(
        {
            "counts": {"train": len(retain), "valid": len(valid), "test": len(test), "shadow": len(shadow)},
            "users": {
                "train": int(retain["user"].nunique()),
                "valid": int(valid["user"].nunique()),
                "test": int(test["user"].nunique()),
            },
            "deleted_users": deleted_users,
            "deleted_items": deleted_items,
            "batch": {
                "id": batch_id,
                "prior": prior_dir.as_posix(),
                "prior_train_sha256": sha256_file(prior_dir / "train.parquet"),
                "targets": {"users": len(t["users"]), "items": len(t["items"]), "interactions": len(t["pairs"])},
                "forget": len(forget),
                "retain": len(retain),
                "heldout": len(heldout),
                "heldout_shadow": len(heldout_shadow),
                "affected_users": int(forget["user"].nunique()),
                "target_items": int(forget["item"].nunique()),
            },
        }
    )
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        for name, frame in (
            ("train", retain),
            ("valid", valid),
            ("test", test),
            ("forget", forget),
            ("heldout", heldout),
            ("shadow", shadow),
            ("heldout_shadow", heldout_shadow),
        ):
            _write(frame, tmp / f"{name}.parquet")
        write_json(tmp / "split.json", out_meta)
    return out_meta


def validate_sets(prior_retain: pd.DataFrame, forget: pd.DataFrame, retain: pd.DataFrame, n_items: int) -> None:
    """Great Expectations: forget and retain are disjoint and their union is the prior retain set."""
    _, gxe, _ = import_gx()
    prior_keys = _keys(prior_retain, n_items)
    membership = pd.DataFrame(
        {
            "pair": prior_keys,
            "places": np.isin(prior_keys, _keys(forget, n_items)).astype(int)
            + np.isin(prior_keys, _keys(retain, n_items)).astype(int),
        }
    )
    union = pd.DataFrame({"pair": np.concatenate([_keys(forget, n_items), _keys(retain, n_items)])})
    union["in_prior"] = np.isin(union["pair"].to_numpy(), prior_keys)
    frames = {
        "membership": (membership, [gxe.ExpectColumnValuesToBeInSet(column="places", value_set=[1])]),
        "union": (
            union,
            [
                gxe.ExpectColumnValuesToBeInSet(column="in_prior", value_set=[True]),
                gxe.ExpectColumnValuesToBeUnique(column="pair"),
                gxe.ExpectTableRowCountToEqual(value=len(prior_keys)),
            ],
        ),
    }
    what = {
        "membership": "prior retain pairs not in exactly one of forget/retain",
        "union": "forget ∪ retain differs from the prior retain set",
    }
    failures = []
    for name, outcome in run_expectations("sets", frames):
        for r in outcome.results:
            if not r.success:
                n = (r.result or {}).get("unexpected_count", (r.result or {}).get("observed_value"))
                failures.append(f"{r.expectation_config.type} ({what[name]}): {n}")
    if failures:
        raise ValidationFailed("forget/retain validation failed: " + "; ".join(failures))
