"""A demo deletion batch for `make run`: a request file that mixes user, item and
interaction requests drawn (seeded) from the dataset, the backdoor canary's fake users when
the split has them, plus a few bad rows that show how rejections are recorded. Nothing here is
used by the pipeline itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tru.io import atomic_path


def _raw_ids(path: Path, id_col: str, n: int) -> list[str]:
    if path.is_file():
        df = pd.read_csv(path, sep="\t", dtype={"raw_id": str}, keep_default_na=False)
        return df.sort_values(id_col)["raw_id"].tolist()
    return [str(i) for i in range(n)]


def raw_id_lists(dataset_dir: str | Path, split_dir: str | Path) -> tuple[list[str], list[str], list[int]]:
    """The raw id of every user index (the canary's fake users after the real ones) and item
    index of the split, and the fake users' indices."""
    dataset_dir, split_dir = Path(dataset_dir), Path(split_dir)
    meta = json.loads((split_dir / "split.json").read_text())
    canary = meta.get("canary") or {}
    fake = [int(u) for u in canary.get("fake_users", [])]
    users = _raw_ids(dataset_dir / "user_map.tsv", "userID", meta["n_users"] - len(fake)) + list(
        canary.get("raw_ids", [])
    )
    return users, _raw_ids(dataset_dir / "item_map.tsv", "itemID", meta["n_items"]), fake


def demo_requests(
    dataset_dir: str | Path,
    split_dir: str | Path,
    out: str | Path,
    seed: int,
    user_share: float = 0.02,
    n_items: int = 3,
    n_interactions: int = 20,
    received_at: str = "2026-01-01T02:00:00Z",
) -> dict:
    """Write a JSON Lines request file at `out`; returns counts by kind."""
    dataset_dir, split_dir = Path(dataset_dir), Path(split_dir)
    meta = json.loads((split_dir / "split.json").read_text())
    users, items, fake = raw_id_lists(dataset_dir, split_dir)
    train = pd.read_parquet(split_dir / "train.parquet", columns=["user", "item"]).to_numpy()
    rng = np.random.default_rng(seed)
    active = np.setdiff1d(np.unique(train[:, 0]), fake)
    del_users = rng.choice(active, size=max(1, int(round(user_share * len(active)))), replace=False)
    rest = train[~np.isin(train[:, 0], np.r_[del_users, fake])]
    counts = np.bincount(rest[:, 1], minlength=meta["n_items"])
    mid = np.flatnonzero((counts >= 5) & (counts <= 50))  # items with a modest audience
    del_items = rng.choice(mid if len(mid) >= n_items else np.flatnonzero(counts), size=n_items, replace=False)
    rest = rest[~np.isin(rest[:, 1], del_items)]
    pairs = rest[rng.choice(len(rest), size=min(n_interactions, len(rest)), replace=False)]
    rows = []
    for k, u in enumerate(sorted(del_users.tolist())):
        rows.append(
            {
                "request_id": f"demo-user-{k:04d}",
                "kind": "user",
                "user_id": users[u],
                "item_id": None,
                "received_at": received_at,
                "reason": "account deleted",
            }
        )
    for k, u in enumerate(fake):  # the backdoor canary: deleting it is what the audit checks
        rows.append(
            {
                "request_id": f"demo-canary-{k:04d}",
                "kind": "user",
                "user_id": users[u],
                "item_id": None,
                "received_at": received_at,
                "reason": "backdoor canary (fake account) removed by the audit",
            }
        )
    for k, i in enumerate(sorted(del_items.tolist())):
        rows.append(
            {
                "request_id": f"demo-item-{k:04d}",
                "kind": "item",
                "user_id": None,
                "item_id": items[i],
                "received_at": received_at,
                "reason": "product withdrawn by the seller",
            }
        )
    for k, (u, i) in enumerate(sorted(map(tuple, pairs.tolist()))):
        rows.append(
            {
                "request_id": f"demo-inter-{k:04d}",
                "kind": "interaction",
                "user_id": users[u],
                "item_id": items[i],
                "received_at": received_at,
                "reason": "remove this from my history",
            }
        )
    # rows a real inbox also sees: each is recorded as rejected, with its reason
    rows.append(
        {
            "request_id": "demo-bad-0001",
            "kind": "account",
            "user_id": users[0],
            "item_id": None,
            "received_at": received_at,
            "reason": "unknown kind",
        }
    )
    rows.append(
        {
            "request_id": "demo-bad-0002",
            "kind": "user",
            "user_id": "no-such-user",
            "item_id": None,
            "received_at": received_at,
            "reason": "unknown user",
        }
    )
    rows.append(
        {
            "request_id": "../demo-bad-0003",
            "kind": "item",
            "user_id": None,
            "item_id": items[0],
            "received_at": received_at,
            "reason": "<script>alert('x')</script> path-like id",
        }
    )
    with atomic_path(out) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return {"user": len(del_users), "canary": len(fake), "item": int(n_items), "interaction": int(len(pairs)), "bad": 3}
