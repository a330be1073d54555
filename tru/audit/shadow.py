"""The membership test against shadow pairs: do the forgotten pairs still rank above pairs
no model ever trained on? (docs: Audits and evidence, "The gate").

Shadow pairs (tru/data/split.py) are a random share of each user's training rows held out
from every model. Compared within a *stratum* (a user, or an item the batch deletes:
`UnlearnContext.membership_strata`), a forgotten pair and a shadow pair of an exact retrain
are exchangeable: both are real interactions of the same user or item, neither trained on.
So the test needs no retrain to be calibrated:

- the statistic is the stratified AUC of rank percentiles (the share of (forgotten, shadow)
  pairs of the same stratum where the forgotten one ranks higher; ties count half): 0.5 when
  the model cannot tell them apart, 1 when every forgotten pair ranks above;
- its null distribution is what it would be under exchangeability: the labels permuted
  within each stratum (`permutations` times, seeded);
- the threshold is the null's `quantile` (the test's size: an exact retrain exceeds it that
  often), and at least 0.5 + `min_effect` (a difference too small to matter is not residue);
- the test has *power* on a batch when the original model, which trained on every forgotten
  pair, exceeds the threshold: a check that the untouched model passes proves nothing.

What it sees: forgotten pairs that still rank like trained ones (memorised interactions,
user rows that still hold the user). What it cannot see: influence that does not lift the
forgotten pairs themselves, e.g. items the deleted users pushed for everyone (the item-side
residue check, tru.audit.residue, covers those); and it assumes the deletion is a random
draw of the stratum's rows, as shadow pairs are: a user who deletes exactly their oldest or
most embarrassing items is compared with random ones of theirs.
"""

from __future__ import annotations

import numpy as np


def _within_ranks(values: np.ndarray, strata: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average ranks (1-based, ties share) of `values` within each stratum; the strata's
    codes 0..k-1 and sizes."""
    codes, inverse = np.unique(strata, return_inverse=True)
    order = np.lexsort((values, inverse))
    v, s = values[order], inverse[order]
    n = len(values)
    # runs of equal (stratum, value): their positions averaged
    new_run = np.r_[True, (s[1:] != s[:-1]) | (v[1:] != v[:-1])]
    run = np.cumsum(new_run) - 1
    first_of_stratum = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]
    start = np.repeat(first_of_stratum, np.diff(np.r_[first_of_stratum, n]))
    position = np.arange(n) - start + 1.0
    mean_pos = np.bincount(run, weights=position) / np.bincount(run)
    ranks = np.empty(n)
    ranks[order] = mean_pos[run]
    return ranks, inverse, np.bincount(inverse, minlength=len(codes))


def _auc_from_ranks(ranks: np.ndarray, member: np.ndarray, stratum: np.ndarray, k: int) -> float:
    n_m = np.bincount(stratum[member], minlength=k).astype(float)
    n_all = np.bincount(stratum, minlength=k).astype(float)
    n_n = n_all - n_m
    rank_sum = np.bincount(stratum[member], weights=ranks[member], minlength=k)
    u = rank_sum - n_m * (n_m + 1) / 2
    return float(u.sum() / (n_m * n_n).sum())


def stratified_auc(members: np.ndarray, non_members: np.ndarray, sm: np.ndarray, sn: np.ndarray) -> float | None:
    """The share of (member, non-member) pairs of the same stratum where the member ranks
    higher (ties half); None without a comparable pair."""
    if len(members) == 0 or len(non_members) == 0:
        return None
    values = np.concatenate([members, non_members]).astype(float)
    strata = np.concatenate([sm, sn])
    member = np.r_[np.ones(len(members), bool), np.zeros(len(non_members), bool)]
    ranks, inverse, sizes = _within_ranks(values, strata)
    n_m = np.bincount(inverse[member], minlength=len(sizes))
    if ((sizes - n_m) * n_m).sum() == 0:
        return None
    return _auc_from_ranks(ranks, member, inverse, len(sizes))


def null_distribution(
    members: np.ndarray, non_members: np.ndarray, sm: np.ndarray, sn: np.ndarray, permutations: int, seed: int
) -> np.ndarray:
    """The stratified AUC with the member labels permuted within each stratum, `permutations`
    times (seeded): its distribution when the two sides are exchangeable (an exact retrain)."""
    values = np.concatenate([members, non_members]).astype(float)
    strata = np.concatenate([sm, sn])
    member = np.r_[np.ones(len(members), bool), np.zeros(len(non_members), bool)]
    ranks, inverse, sizes = _within_ranks(values, strata)
    k = len(sizes)
    n_m = np.bincount(inverse[member], minlength=k)
    first = np.r_[0, np.cumsum(sizes)[:-1]]
    rng = np.random.default_rng(seed)
    null = np.empty(permutations)
    for j in range(permutations):
        order = np.lexsort((rng.random(len(values)), inverse))  # each stratum's rows in random order
        position = np.arange(len(values)) - first[inverse[order]]
        perm = np.zeros(len(values), bool)
        perm[order[position < n_m[inverse[order]]]] = True
        null[j] = _auc_from_ranks(ranks, perm, inverse, k)
    return null


def membership_test(
    members: np.ndarray,
    non_members: np.ndarray,
    sm: np.ndarray,
    sn: np.ndarray,
    quantile: float,
    min_effect: float,
    permutations: int,
    seed: int,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
    null: np.ndarray | None = None,
) -> dict:
    """The calibrated test (module docstring) on rank percentiles: `members` (forgotten pairs)
    and `non_members` (shadow pairs) with their strata `sm`, `sn`; `reference`: the original
    model's percentiles of the same members and non-members, for the test's power. Returns the AUC, the null's
    quantile, the threshold, the counts, `exceeds` (AUC > threshold) and, with `reference`,
    `original_auc` and `power` (the original exceeds the threshold). `null`: the
    null_distribution of the same pairs, when the caller has it (it depends on the strata and
    the ties only, not on the model, so a loop that tests every epoch draws it once)."""
    out: dict = {
        "members": int(len(members)),
        "non_members": int(len(non_members)),
        "strata": int(len(np.unique(sm))) if len(sm) else 0,
        "quantile": quantile,
        "min_effect": min_effect,
        "permutations": permutations,
    }
    auc = stratified_auc(members, non_members, sm, sn)
    if auc is None:
        return {**out, "auc": None, "null_quantile": None, "threshold": None, "exceeds": None, "power": False}
    if null is None:
        null = null_distribution(members, non_members, sm, sn, permutations, seed)
    q = float(np.quantile(null, quantile))
    threshold = max(q, 0.5 + min_effect)
    out.update(
        {
            "auc": round(auc, 6),
            "null_mean": round(float(null.mean()), 6),
            "null_quantile": round(q, 6),
            "threshold": round(threshold, 6),
            "exceeds": bool(auc > threshold),
        }
    )
    if reference is not None:
        original = stratified_auc(reference[0], reference[1], sm, sn)
        out["original_auc"] = None if original is None else round(original, 6)
        out["power"] = bool(original is not None and original > threshold)
    return out
