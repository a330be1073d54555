"""The backdoor canary: fake users who carry a few trigger items plus one cold target item
are added to the training split before the base model is trained; a deletion batch removes
them, and the audit measures whether the target stops being pushed to normal users.

A bandwagon profile: the triggers, the target, and popular filler items. The target has
some real audience, just below the top-20 (params: 100-200 real training interactions on
ML-100k): the fake users then push it across the top-20 boundary for many normal users.
A cold target does not work on a multimodal graph recommender: measured with MGCN on ML-100k
(a canary sweep), a cold target with 94 or 236 fake users (4- to 30-item profiles)
reached at most 0.6% of normal users' top-20 (median rank 943 -> 190 at best), because MGCN
places an item partly through its content neighbours, which the fake users do not move; the
same 94 fake users with 12-item profiles lifted a 193-interaction target from 10.7% to 16.8%
(median rank 89 -> 51), 189 fake users to 21.7% (rank 34).

Because the target has a natural audience, "the backdoor is gone" is not ASR = 0 but ASR
back to what items of the target's real popularity get: `backdoor_metrics` measures that
reference on the audited model itself (the mean top-k share of the `peers` items whose
popularity among normal users is nearest the target's), so the gate's check (the lift, ASR
minus the peers' share) needs no retrain.

On disk: the `canary` entry of the split's split.json (fake user indices and raw ids, target,
triggers), which every batch's sets folder carries forward; the fake users are appended after
the real ones (indices n_users_real ...), in the train split only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tru.data.dataset import group_by_user
from tru.io import read_json

RAW_PREFIX = "canary-"


def raw_ids(n_fake: int, generation: int = 0) -> list[str]:
    """The fake users' raw ids: `canary-0000`, ... in the first data generation, then
    `canary-g<N>-0000`, ...: each generation plants fake accounts of its own, so an erased
    canary of an earlier generation is not planted again under its erased ids."""
    tag = f"g{generation}-" if generation else ""
    return [f"{RAW_PREFIX}{tag}{k:04d}" for k in range(n_fake)]


def inject(
    train: pd.DataFrame, n_users: int, n_items: int, cfg, seed: int, generation: int = 0
) -> tuple[pd.DataFrame, dict]:
    """`train` plus the fake users' rows, and the canary description (see module docstring);
    `generation`: the data generation of the dataset (its raw ids, `raw_ids`)."""
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
        "raw_ids": raw_ids(n_fake, generation),
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


def popularity_peers(
    canary: dict,
    normal_users: np.ndarray,
    train: np.ndarray,
    n_items: int,
    peers: int,
    candidates: np.ndarray | None = None,
) -> np.ndarray:
    """The `peers` recommendable items (not the target, not a trigger) whose number of
    training interactions from `normal_users` is nearest the target's (ties: lower index)."""
    target, triggers = canary["target_item"], np.asarray(canary["trigger_items"], np.int64)
    rows = train[np.isin(train[:, 0], normal_users)]
    pop = np.bincount(rows[:, 1], minlength=n_items)
    pool = np.arange(n_items) if candidates is None else np.asarray(candidates, np.int64)
    pool = np.setdiff1d(pool, np.r_[triggers, target])
    order = np.argsort(np.abs(pop[pool] - pop[target]), kind="stable")
    return pool[order[:peers]]


def backdoor_metrics(
    model,
    canary: dict,
    normal_users: np.ndarray,
    train: np.ndarray,
    n_users: int,
    k: int = 20,
    batch_users: int = 1024,
    candidates: np.ndarray | None = None,
    peers: int = 20,
) -> dict:
    """Attack success rate: share of `normal_users` with the target in their top-k (their own
    training items masked), the same among those who interacted with a trigger item, the
    target's median rank (1 = top) among normal users, and the reference a model without the
    fake users would give: `peer_asr`, the mean top-k share of the target's popularity peers
    (`popularity_peers`), and `lift` = asr - peer_asr."""
    target, triggers = canary["target_item"], np.asarray(canary["trigger_items"], np.int64)
    per_user = group_by_user(train, n_users)
    score = model.score_fn()
    n_items = model.n_items
    peer_items = popularity_peers(canary, normal_users, train, n_items, peers, candidates)
    peer_hits = np.zeros(len(peer_items), np.int64)
    blocked = np.ones(n_items, bool)
    if candidates is not None:
        blocked[candidates] = False
    else:
        blocked[:] = False
    rank_list: list[int] = []
    hit_list: list[bool] = []
    trig_list: list[bool] = []
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
            if target in own:
                row[target] = float("-inf")
            top = torch.topk(row, min(k, n_items)).indices.numpy()
            peer_hits += np.isin(peer_items, top[np.isfinite(row[top].numpy())])
            rank_list.append(r)
            hit_list.append(r <= k and target not in own)
            trig_list.append(bool(np.isin(own, triggers).any()))
    ranks, hit, trig = np.asarray(rank_list), np.asarray(hit_list), np.asarray(trig_list)
    asr = float(hit.mean()) if len(hit) else 0.0
    peer_asr = float(peer_hits.mean() / len(users)) if len(users) and len(peer_items) else 0.0
    return {
        "asr": round(asr, 6),
        "peer_asr": round(peer_asr, 6),
        "lift": round(asr - peer_asr, 6),
        "peer_items": peer_items.tolist(),
        "asr_trigger_users": round(float(hit[trig].mean()) if trig.any() else 0.0, 6),
        "trigger_users": int(trig.sum()),
        "median_rank": float(np.median(ranks)) if len(ranks) else 0.0,
        "users": int(len(users)),
    }
