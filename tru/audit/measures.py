"""Exposure of a batch's target items and the per-module parameter shift (the deletion heat
map), for the original, unlearned and retrained models."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tru.data.dataset import group_by_user


def exposure(
    model,
    items: np.ndarray,
    users: np.ndarray,
    train: np.ndarray,
    n_users: int,
    candidates: np.ndarray | None,
    k: int = 20,
    batch_users: int = 1024,
) -> dict:
    """How often `items` appear in `users`' top-k (their training items masked): the share
    of users with at least one of them, and the mean count per user."""
    items = np.asarray(items, np.int64)
    users = np.asarray(users, np.int64)
    if len(items) == 0 or len(users) == 0:
        return {"share_of_users": 0.0, "mean_per_user": 0.0, "users": int(len(users))}
    per_user = group_by_user(train, n_users)
    blocked = torch.zeros(model.n_items, dtype=torch.bool)
    if candidates is not None:
        blocked[:] = True
        blocked[torch.as_tensor(candidates)] = False
    is_target = torch.zeros(model.n_items, dtype=torch.bool)
    is_target[torch.as_tensor(items)] = True
    score = model.score_fn()
    counts = []
    for s in range(0, len(users), batch_users):
        chunk = users[s : s + batch_users]
        with torch.no_grad():
            sc = score(torch.as_tensor(chunk)).clone()
        sc[:, blocked] = float("-inf")
        for j, u in enumerate(chunk):
            sc[j, torch.as_tensor(per_user[u], dtype=torch.long)] = float("-inf")
        top = torch.topk(sc, min(k, sc.shape[1]), dim=1).indices
        counts.append(is_target[top].sum(1).numpy())
    c = np.concatenate(counts)
    return {
        "share_of_users": round(float((c > 0).mean()), 6),
        "mean_per_user": round(float(c.mean()), 6),
        "users": int(len(users)),
    }


def module_norms(model, base) -> dict[str, float]:
    """Relative L2 change ||theta_m - theta0_m|| / ||theta0_m|| per selection module."""
    own, ref = dict(model.named_parameters()), dict(base.named_parameters())
    out = {}
    for module, names in model.selection_modules().items():
        diff = sum(float((own[n].detach() - ref[n].detach()).pow(2).sum()) for n in names)
        norm = sum(float(ref[n].detach().pow(2).sum()) for n in names)
        out[module] = round(float(np.sqrt(diff) / max(np.sqrt(norm), 1e-12)), 6)
    return out


def parameter_shift(unlearned, base, retrain=None, flag_ratio: float = 3.0) -> dict:
    """The deletion heat map: per module, how far the unlearned model moved from theta_0 and,
    when a retrain ran, how far retraining moved it; a module that moved more than
    `flag_ratio` times what retraining moved it is flagged (the update went where the data
    did not need it to)."""
    u = module_norms(unlearned, base)
    r = module_norms(retrain, base) if retrain is not None else {}
    rows = []
    for m in u:
        row: dict[str, Any] = {"module": m, "unlearned": u[m], "retrain": r.get(m)}
        if m in r:
            row["ratio"] = round(u[m] / r[m], 6) if r[m] > 0 else (0.0 if u[m] == 0 else float("inf"))
            row["flagged"] = bool(row["ratio"] > flag_ratio)
        else:
            row["ratio"], row["flagged"] = None, False
        rows.append(row)
    return {"flag_ratio": flag_ratio, "modules": rows, "flagged": [r["module"] for r in rows if r["flagged"]]}
