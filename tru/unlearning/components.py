"""Map a batch's deletions to the model components that carry their influence
(`tru map --batch B` -> components.json).

- counts of affected users, items and interactions;
- target items (items of the forget pairs): how many, and how much of their engagement before
  the batch the deletion removes, as shares: for most items it is small, which is why they
  persist in rankings after deletion (and even after a retrain);
- derived structures to rebuild: the user-item graph always; each modality's item kNN graph
  when items are deleted, with how many items get new neighbours;
- the deletion heat map: forget- vs retain-side gradient energies per module and per branch
  on the current model, ranked by their ratio.

components.json is committed to git with the batch's reports, and the erased data must not
outlive the erasure there: it holds counts, shares and module names only, never an id of a
user or item of the forget set nor an item list (one user's request would otherwise leave
that user's whole history in the repository, per item).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tru.models.base import Recommender
from tru.train import NegativeSampler
from tru.unlearning.energy import gradient_energies


def target_items(prior_train: np.ndarray, forget: np.ndarray, n_items: int) -> dict:
    """How many items the forget pairs touch and how much of each one's engagement before the
    batch they remove, summarised over the items: per-item rows would name the forgotten items
    (see the module docstring)."""
    before = np.bincount(prior_train[:, 1], minlength=n_items)
    removed = np.bincount(forget[:, 1], minlength=n_items)
    items = np.flatnonzero(removed)
    share = removed[items] / np.maximum(before[items], 1)
    return {
        "count": int(len(items)),
        "removed_share_median": float(np.median(share)) if len(items) else 0.0,
        "share_under_10pct": float(np.mean(share < 0.10)) if len(items) else 0.0,
        "fully_removed": int(np.sum(share >= 1.0)),
    }


def knn_rebuild(model: Recommender, deleted_items: np.ndarray) -> dict:
    """Per modality, the items whose kNN neighbourhood contains a deleted item (they get new
    neighbours when the graph is rebuilt) and the deleted items' own former neighbours, by their
    indices: for checking the rebuild, never for a report (components.json keeps counts)."""
    out = {}
    knn = getattr(model, "knn", {}) or {}
    for modality, graph in knn.items():
        dense_cols = graph.matrix.to_sparse_coo().coalesce()
        rows, cols = dense_cols.indices()
        rows, cols = rows.numpy(), cols.numpy()
        pointing = np.isin(cols, deleted_items) & ~np.isin(rows, deleted_items)
        own = np.isin(rows, deleted_items) & (rows != cols)
        out[modality] = {
            "neighbours_of_deleted": sorted(set(rows[pointing].tolist())),
            "former_neighbours": {int(d): sorted(cols[own & (rows == d)].tolist()) for d in deleted_items},
        }
    return out


def map_components(
    model: Recommender,
    prior_train: np.ndarray,
    forget: np.ndarray,
    new_deleted_items: np.ndarray,
    targets: dict,
    seed: int,
    probe_size: int = 2048,
) -> dict:
    """components.json for one batch: counts, shares and module names, no id of the forget set
    (see the module docstring). `model` is the current model with its graph set on
    `prior_train` (the interactions it was trained with, forget pairs included)."""
    t0 = time.perf_counter()
    n_items = model.n_items
    retain = prior_train[
        ~np.isin(prior_train[:, 0] * n_items + prior_train[:, 1], forget[:, 0] * n_items + forget[:, 1])
    ]
    rng = np.random.default_rng(seed)
    heat = {}
    if len(forget):
        energies = gradient_energies(model, forget, retain, NegativeSampler(prior_train, n_items), rng, probe_size)
        modules = energies.group(model.selection_modules())
        branches = energies.group(model.branches())
        heat = {
            "modules": _ranked(modules),
            "branches": _ranked(branches),
            "probe_size": int(min(probe_size, len(forget))),
        }
    rebuild: dict[str, Any] = {"user_item_graph": True, "item_knn_graphs": bool(len(new_deleted_items))}
    if len(new_deleted_items):
        rebuild["knn"] = {
            modality: {"items_with_new_neighbours": len(found["neighbours_of_deleted"])}
            for modality, found in knn_rebuild(model, np.asarray(new_deleted_items, dtype=np.int64)).items()
        }
    return {
        "counts": {
            "requests": targets,
            "affected_users": int(len(np.unique(forget[:, 0]))) if len(forget) else 0,
            "target_items": int(len(np.unique(forget[:, 1]))) if len(forget) else 0,
            "forget_interactions": int(len(forget)),
            "retain_interactions": int(len(retain)),
        },
        "target_items": target_items(prior_train, forget, n_items),
        "rebuild": rebuild,
        "heat_map": heat,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _ranked(groups: dict[str, dict[str, float]]) -> list[dict]:
    """One row per group (its name, its numbers), highest forget/retain ratio first, ranked from 1."""
    rows: list[dict[str, Any]] = [
        {"name": k, **{m: (float(v) if m != "params" else int(v)) for m, v in vals.items()}}
        for k, vals in groups.items()
    ]
    rows.sort(key=lambda r: (-r["ratio"], r["name"]))
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank
    return rows
