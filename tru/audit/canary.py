"""The backdoor canary: fake users who carry a few trigger items plus one cold target item
are added to the training split before the base model is trained; a deletion batch removes
them, and the audit measures whether the target stops being pushed to normal users.

A bandwagon profile: the triggers, the target, and popular filler items. Triggers are items
of modest popularity, so that the fake users are a large share of their audience and the
link trigger -> target is strong; the target is cold (almost no real interactions), so its
exposure after a good erasure is what a model that never saw the fake users gives it.

On disk: the `canary` entry of the split's split.json (fake user indices and raw ids, target,
triggers), which every batch's sets folder carries forward; the fake users are appended after
the real ones (indices n_users_real ...), in the train split only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tru.io import read_json

RAW_PREFIX = "canary-"


def inject(train: pd.DataFrame, n_users: int, n_items: int, cfg, seed: int) -> tuple[pd.DataFrame, dict]:
    """`train` plus the fake users' rows, and the canary description (see module docstring)."""
    rng = np.random.default_rng([seed, 0xCA9A])
    pop = np.bincount(train["item"].to_numpy(np.int64), minlength=n_items)
    t_lo, t_hi = cfg.target_popularity
    pool = np.flatnonzero((pop >= t_lo) & (pop <= t_hi))
    if len(pool) == 0:
        pool = np.argsort(pop, kind="stable")[: max(1, n_items // 10)]
    target = int(rng.choice(pool))
    lo, hi = cfg.trigger_popularity
    mid = np.setdiff1d(np.flatnonzero((pop >= lo) & (pop <= hi)), [target])
    if len(mid) < cfg.triggers:
        mid = np.setdiff1d(np.argsort(-pop, kind="stable")[: 10 * cfg.triggers], [target])
    triggers = np.sort(rng.choice(mid, size=cfg.triggers, replace=False)).astype(np.int64)
    n_fake = max(1, int(round(cfg.users * n_users))) if cfg.users < 1 else int(cfg.users)
    n_filler = max(0, cfg.profile_length - cfg.triggers - 1)
    # filler from the very top of the popularity list: the target then looks like what everyone likes
    popular = np.setdiff1d(np.argsort(-pop, kind="stable")[: max(2 * n_filler, 10)], np.r_[triggers, target])
    t0 = int(train["timestamp"].max()) + 1 if len(train) else 0
    rows = []
    fake = np.arange(n_users, n_users + n_fake, dtype=np.int64)
    for u in fake:
        filler = rng.choice(popular, size=min(n_filler, len(popular)), replace=False)
        items = np.r_[triggers, target, filler]
        rows.append(pd.DataFrame({"user": u, "item": items.astype(np.int64), "timestamp": t0 + np.arange(len(items))}))
    out = pd.concat([train, *rows], ignore_index=True)
    meta = {
        "fake_users": fake.tolist(),
        "raw_ids": [f"{RAW_PREFIX}{k:04d}" for k in range(n_fake)],
        "target_item": target,
        "trigger_items": triggers.tolist(),
        "profile_length": int(cfg.profile_length),
        "target_popularity_before": int(pop[target]),
        "rows": int(sum(len(r) for r in rows)),
    }
    return out, meta


def load(split_dir: str | Path) -> dict | None:
    """The canary of a split folder or of a batch's sets folder (None when off)."""
    path = Path(split_dir) / "split.json"
    return read_json(path).get("canary") if path.is_file() else None


def backdoor_metrics(model, canary: dict, normal_users: np.ndarray, train: np.ndarray, n_users: int,
                     k: int = 20, batch_users: int = 1024, candidates: np.ndarray | None = None) -> dict:
    """Attack success rate: share of `normal_users` with the target in their top-k (their own
    training items masked), the same among those who interacted with a trigger item, and the
    target's median rank (1 = top) among normal users."""
    from tru.data.dataset import group_by_user

    target, triggers = canary["target_item"], np.asarray(canary["trigger_items"], np.int64)
    per_user = group_by_user(train, n_users)
    score = model.score_fn()
    n_items = model.n_items
    blocked = np.ones(n_items, bool)
    if candidates is not None:
        blocked[candidates] = False
    else:
        blocked[:] = False
    ranks, hit, trig = [], [], []
    users = np.asarray(normal_users, np.int64)
    for s in range(0, len(users), batch_users):
        chunk = users[s : s + batch_users]
        with torch.no_grad():
            sc = score(torch.as_tensor(chunk)).clone()
        sc[:, torch.as_tensor(blocked)] = float("-inf")
        for j, u in enumerate(chunk):
            own = per_user[u]
            row = sc[j]
            t = float(row[target])
            row[torch.as_tensor(own[own != target], dtype=torch.long)] = float("-inf")
            r = int((row > t).sum()) + 1
            ranks.append(r)
            hit.append(r <= k and target not in own)
            trig.append(bool(np.isin(own, triggers).any()))
    ranks, hit, trig = np.asarray(ranks), np.asarray(hit), np.asarray(trig)
    return {
        "asr": round(float(hit.mean()) if len(hit) else 0.0, 6),
        "asr_trigger_users": round(float(hit[trig].mean()) if trig.any() else 0.0, 6),
        "trigger_users": int(trig.sum()),
        "median_rank": float(np.median(ranks)) if len(ranks) else 0.0,
        "users": int(len(users)),
    }
