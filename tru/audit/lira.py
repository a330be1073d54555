"""A reference-model membership attack: offline LiRA with a fixed variance (Carlini et al.,
"Membership Inference Attacks From First Principles", IEEE S&P 2022), the family of attacks
the field's audit tools (ML Privacy Meter, LeakPro) run and report as TPR at low FPR.

The attack of tru.audit.mia sees one model's scores. Once an erasure has re-drawn a deleted
user's row, those scores sit near chance by construction, whatever else the model kept. A
reference-model attack asks a sharper question per pair: is this pair ranked higher by the
audited model than by models trained *without* it? The reference models are exact retrains
on the same retain set with other training seeds (OUT models for every forgotten pair and
every shadow pair alike). Per pair, the statistic is the logit of its item's rank percentile
in its user's ranking (retained training items masked). Its mean over the references is the
pair's OUT expectation; one variance pooled over all pairs and references (the fixed-variance
variant, sound with few references) scales the audited model's deviation from it. A pair
the audited model still remembers sits far above its references: the score is that z.

Members are forgotten pairs and non-members shadow pairs of the same users, balanced per user
as the other attack samples them (tru.audit.mia.balanced_sample). Reported: AUC and TPR at 1%
and 0.1% FPR with percentile-bootstrap 95% intervals over users (a user's pairs are resampled
together: they are not independent). An exact retrain's pairs are
exchangeable with its references', so its TPR at x% FPR sits near x%: that is the calibration.
A TPR at 0.1% FPR needs at least 1,000 non-members to mean anything; the result says how many
there were.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from tru.audit.mia import pair_features

FPRS = (0.01, 0.001)
CLIP = 1e-4  # rank percentiles of 0 or 1 would make the logit infinite


def pair_statistic(
    model, pairs: np.ndarray, retained_train: np.ndarray, n_users: int, candidates: np.ndarray | None
) -> np.ndarray:
    """Per pair, the logit of its item's rank percentile in its user's ranking under `model`
    (1 = top; retained training items masked, as tru.audit.mia.pair_features ranks)."""
    p = np.clip(pair_features(model, pairs, retained_train, n_users, candidates)[:, 2], CLIP, 1 - CLIP)
    return np.log(p / (1 - p))


def _metrics(y: np.ndarray, z: np.ndarray) -> list[float]:
    """AUC and TPR at each of FPRS of the score `z` (higher = member)."""
    if len(np.unique(y)) < 2:
        return [0.5] + [0.0] * len(FPRS)
    fpr, tpr, _ = roc_curve(y, z)
    return [float(roc_auc_score(y, z))] + [float(tpr[fpr <= x].max(initial=0.0)) for x in FPRS]


def _draws(n: int, groups: np.ndarray | None, bootstrap: int, rng: np.random.Generator):
    """Bootstrap index sets: pairs drawn with replacement, or, with `groups` (a user per pair),
    whole users drawn with replacement (a user's pairs are not independent of each other)."""
    if groups is None:
        for _ in range(bootstrap):
            yield rng.integers(0, n, n)
        return
    _, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    for _ in range(bootstrap):
        yield np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])


def lira_offline(
    target: np.ndarray,
    references: np.ndarray,
    y: np.ndarray,
    bootstrap: int = 200,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict:
    """The attack on per-pair statistics: `target` [n] under the audited model, `references`
    [k, n] under k >= 2 models trained without any of the pairs, `y` [n] 1 = member. Returns
    AUC and TPR at 1% / 0.1% FPR with 95% bootstrap intervals (`groups`: each pair's user, so
    that users are resampled whole), the pooled sigma, and counts."""
    references = np.atleast_2d(np.asarray(references, float))
    k, n = references.shape
    if k < 2:
        raise ValueError("offline LiRA needs at least two reference models (their spread is the variance)")
    if n != len(target) or n != len(y):
        raise ValueError(f"{len(target)} target statistics, {n} per reference and {len(y)} labels: lengths differ")
    mu = references.mean(0)
    sigma = float(np.sqrt(((references - mu) ** 2).sum() / (n * (k - 1)))) if n else 0.0
    z = (np.asarray(target, float) - mu) / max(sigma, 1e-12)
    auc, *tprs = _metrics(y, z)
    rng = np.random.default_rng([seed, 0x11A])
    boot = np.array([_metrics(y[d], z[d]) for d in _draws(n, groups, bootstrap, rng)]) if n else None

    def ci(col: int) -> list[float]:
        if boot is None or not len(boot):
            return [float("nan"), float("nan")]
        return [round(float(np.percentile(boot[:, col], 2.5)), 6), round(float(np.percentile(boot[:, col], 97.5)), 6)]

    out = {
        "auc": round(auc, 6),
        "auc_ci": ci(0),
        "references": int(k),
        "sigma": round(sigma, 6),
        "members": int((y == 1).sum()),
        "non_members": int((y == 0).sum()),
    }
    for j, x in enumerate(FPRS, start=1):
        tag = f"{x * 100:g}pct"
        out[f"tpr_at_{tag}_fpr"] = round(tprs[j - 1], 6)
        out[f"tpr_at_{tag}_fpr_ci"] = ci(j)
    return out


def reference_attack(
    model,
    references: list,
    pairs: np.ndarray,
    y: np.ndarray,
    retained_train: np.ndarray,
    n_users: int,
    candidates: np.ndarray | None,
    bootstrap: int = 200,
    seed: int = 0,
) -> dict:
    """`lira_offline` of `model` against the reference models on the sampled `pairs` (labels
    `y`: 1 = forgotten pair, 0 = shadow pair), each ranked with the retained training pairs
    masked."""

    def stat(m) -> np.ndarray:
        return pair_statistic(m, pairs, retained_train, n_users, candidates)

    return lira_offline(stat(model), np.stack([stat(r) for r in references]), y, bootstrap, seed, groups=pairs[:, 0])
