"""Membership inference against an erasure (docs: Audits and evidence).

Members are the forgotten training interactions; non-members are shadow pairs of the same
users (tru/data/split.py: training interactions held out from every model). Reported, not
judged: the gate judges the calibrated test of tru.audit.shadow. Never random non-edges: a
model ranks any observed-style item above a random one, which would make every model look
leaky.

Per pair the attacker sees what a recommender exposes about (u, i): the score, the rank of i
in u's ranking (u's retained training items masked), its percentile and the score normalised
per user. The difference attack also sees the same features from the original model and the
change between the two (it asks "did this pair's standing drop?", Chen et al. 2021).

Attack models are scikit-learn's logistic regression and gradient boosting, cross-validated
(stratified k-fold) on a sample balanced per user (see balanced_sample): out-of-fold scores
give balanced accuracy (0.5 = chance), AUC and TPR at 1% FPR, with percentile-bootstrap 95%
intervals.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tru.data.dataset import group_by_user

FEATURES = ("score", "rank", "rank_percentile", "user_z_score")


def pair_features(
    model,
    pairs: np.ndarray,
    retained_train: np.ndarray,
    n_users: int,
    candidates: np.ndarray | None = None,
    batch_users: int = 1024,
) -> np.ndarray:
    """[len(pairs), 4] features (FEATURES) of each (user, item) pair under `model`."""
    out = np.zeros((len(pairs), len(FEATURES)))
    if len(pairs) == 0:
        return out
    per_user = group_by_user(retained_train, n_users)
    score = model.score_fn()
    allowed = torch.zeros(model.n_items, dtype=torch.bool)
    allowed[torch.as_tensor(candidates if candidates is not None else np.arange(model.n_items))] = True
    users = np.unique(pairs[:, 0])
    for s in range(0, len(users), batch_users):
        chunk = users[s : s + batch_users]
        with torch.no_grad():
            sc = score(torch.as_tensor(chunk)).double()
        for j, u in enumerate(chunk):
            row = sc[j]
            idx = np.flatnonzero(pairs[:, 0] == u)
            items = torch.as_tensor(pairs[idx, 1])
            target = row[items]
            visible = allowed.clone()
            visible[torch.as_tensor(per_user[u], dtype=torch.long)] = False
            pool = row[visible]
            higher = (pool.unsqueeze(0) > target.unsqueeze(1)).sum(1).double()
            n = max(int(visible.sum()), 1)
            mu, sd = pool.mean(), pool.std().clamp_min(1e-12)
            out[idx, 0] = target.numpy()
            out[idx, 1] = (higher + 1).numpy()
            out[idx, 2] = (1.0 - higher / n).numpy()
            out[idx, 3] = ((target - mu) / sd).numpy()
    return out


def balanced_sample(
    members: np.ndarray, non_members: np.ndarray, max_per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Equal numbers of members and non-members *per user* (the smaller side of each user,
    drawn seeded), then at most `max_per_class` matched pairs overall. Balancing per user
    matters: a batch mixes deleted users (many members, few held-out rows) with retained
    ones (few members, many held-out rows), and a model scores the two groups differently;
    balanced only overall, the attack would learn which group a pair comes from, not
    whether it was trained on. Returns (pairs, labels) with label 1 = member."""
    rng = np.random.default_rng([seed, 0x31A])
    picked_m, picked_n = [], []
    if len(members) and len(non_members):
        m_order = np.argsort(members[:, 0], kind="stable")
        n_order = np.argsort(non_members[:, 0], kind="stable")
        m_users, m_start, m_count = np.unique(members[m_order, 0], return_index=True, return_counts=True)
        n_users, n_start, n_count = np.unique(non_members[n_order, 0], return_index=True, return_counts=True)
        _, mi, ni = np.intersect1d(m_users, n_users, return_indices=True)
        for a, b in zip(mi, ni):
            k = int(min(m_count[a], n_count[b]))
            picked_m.append(m_order[m_start[a] + rng.choice(m_count[a], k, replace=False)])
            picked_n.append(n_order[n_start[b] + rng.choice(n_count[b], k, replace=False)])
    pm = np.concatenate(picked_m) if picked_m else np.zeros(0, np.int64)
    pn = np.concatenate(picked_n) if picked_n else np.zeros(0, np.int64)
    if len(pm) > max_per_class:  # keep matched pairs, so the per-user balance survives the cap
        keep = np.sort(rng.choice(len(pm), max_per_class, replace=False))
        pm, pn = pm[keep], pn[keep]
    n = len(pm)
    return np.concatenate([members[pm], non_members[pn]]), np.r_[np.ones(n, np.int64), np.zeros(n, np.int64)]


def _attackers(seed: int) -> dict:
    return {
        "lr": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed)),
        "gbm": HistGradientBoostingClassifier(
            max_iter=100, max_depth=3, learning_rate=0.1, early_stopping=False, random_state=seed
        ),
    }


def _scores(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    pred = p >= 0.5
    tpr = pred[y == 1].mean() if (y == 1).any() else 0.0
    tnr = (~pred[y == 0]).mean() if (y == 0).any() else 0.0
    if len(np.unique(y)) < 2:
        return float((tpr + tnr) / 2), 0.5, 0.0
    auc = roc_auc_score(y, p)
    fpr, tp, _ = roc_curve(y, p)
    return float((tpr + tnr) / 2), float(auc), float(tp[fpr <= 0.01].max(initial=0.0))


def _ci(values: np.ndarray) -> list[float]:
    return [round(float(np.percentile(values, 2.5)), 6), round(float(np.percentile(values, 97.5)), 6)]


def attack(X: np.ndarray, y: np.ndarray, seed: int, folds: int = 5, bootstrap: int = 200) -> dict:
    """Both attackers, out-of-fold, with bootstrap intervals; `best` names the one with the
    higher balanced accuracy (what an adversary would pick)."""
    out: dict = {}
    n_min = int(min((y == 1).sum(), (y == 0).sum()))
    if n_min < 2:
        return {"note": "too few members or non-members to attack", "best": None}
    cv = StratifiedKFold(n_splits=min(folds, n_min), shuffle=True, random_state=seed)
    rng = np.random.default_rng([seed, 0xB007])
    draws = [rng.integers(0, len(y), len(y)) for _ in range(bootstrap)]
    for name, est in _attackers(seed).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = cross_val_predict(est, X, y, cv=cv, method="predict_proba")[:, 1]
        ba, auc, tpr = _scores(y, p)
        boot = np.array([_scores(y[d], p[d]) for d in draws]) if bootstrap else np.zeros((1, 3))
        out[name] = {
            "balanced_accuracy": round(ba, 6),
            "balanced_accuracy_ci": _ci(boot[:, 0]),
            "auc": round(auc, 6),
            "auc_ci": _ci(boot[:, 1]),
            "tpr_at_1pct_fpr": round(tpr, 6),
            "tpr_at_1pct_fpr_ci": _ci(boot[:, 2]),
        }
    out["best"] = max(("lr", "gbm"), key=lambda k: (out[k]["balanced_accuracy"], k == "lr"))
    return out


def membership_audit(
    models: dict,
    base,
    members: np.ndarray,
    non_members: np.ndarray,
    retained_train: np.ndarray,
    n_users: int,
    candidates: np.ndarray | None,
    seed: int,
    folds: int = 5,
    bootstrap: int = 200,
    max_per_class: int = 2000,
) -> dict:
    """The attack against each model in `models` (name -> model; include the original under
    "original"), and the difference attack (features of the model and of `base`) against
    every model but the original."""
    pairs, y = balanced_sample(members, non_members, max_per_class, seed)
    out: dict = {
        "n_members": int(len(members)),
        "n_non_members": int(len(non_members)),
        "sample_per_class": int(len(y) // 2),
        "features": list(FEATURES),
        "models": {},
        "difference": {},
    }
    if len(y) == 0:
        out["note"] = "no members or no non-members of the same users: nothing to attack"
        return out
    base_X = pair_features(base, pairs, retained_train, n_users, candidates)
    for name, model in models.items():
        X = base_X if model is base else pair_features(model, pairs, retained_train, n_users, candidates)
        out["models"][name] = attack(X, y, seed, folds, bootstrap)
        if name != "original":
            out["difference"][name] = attack(np.hstack([X, base_X, X - base_X]), y, seed, folds, bootstrap)
    return out


def best_balanced_accuracy(result: dict) -> float | None:
    """The balanced accuracy of the best attacker in an `attack` result; None when the result
    is empty or no attack ran."""
    if not result or result.get("best") is None:
        return None
    return result[result["best"]]["balanced_accuracy"]
