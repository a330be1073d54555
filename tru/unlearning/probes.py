"""What the unlearning loop watches, and what the batch evaluation reports: retain and
forget ranking metrics (docs: Audits and evidence) and how distinguishable the forgotten pairs
still are from held-out ones (the stopping signal; the audits use a stronger attack)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from tru.data.dataset import InteractionData
from tru.metrics import ranked_metrics_batched
from tru.models.base import Recommender
from tru.train import EvalSet


def retain_eval(data: InteractionData, split: str = "test") -> EvalSet:
    """Retained users' `split` rows; their retained training items and deleted items masked."""
    es = EvalSet.build(data.pairs(split), data.train, data.n_users)
    if len(data.deleted_items):
        es.exclude = [np.union1d(e, data.deleted_items) for e in es.exclude]
    return es


def retain_sample(es: EvalSet, n: int, seed: int) -> EvalSet:
    """`es` itself while it has at most `n` users (or `n` is 0), else `n` of them drawn with
    `seed` (the same on every call): the users a retain check ranks. Two models compared on
    the same users (the check's before and after) need no more to see a drop of a few per
    cent, and the check's cost then stops growing with the dataset."""
    if n <= 0 or len(es.users) <= n:
        return es
    pick = np.sort(np.random.default_rng(seed).choice(len(es.users), size=n, replace=False))
    return EvalSet(es.users[pick], [es.positives[j] for j in pick], [es.exclude[j] for j in pick])


def forget_eval(data: InteractionData, forget: np.ndarray) -> EvalSet:
    """Affected users: ground truth = their forgotten training items, only their retained
    training items masked (ranked over all items, deleted ones included: residual influence
    is what we measure)."""
    return EvalSet.build(forget, data.train, data.n_users)


def rank_metrics_of(
    model: Recommender, es: EvalSet, ks=(20,), batch_users: int = 4096, score=None, rows: str | None = None
) -> dict:
    """Recall and NDCG at each k of `ks` of `model` on `es` ({"recall@20": ..., "n_rows": ...}; zeros
    when `es` has no user). `score`: the model's `score_fn()` when the caller already has it (one
    forward pass for several probes of the same model state). `rows`: a metric whose per-user
    values come back too, under "rows" (tru.metrics.ranked_metrics_batched)."""
    if len(es.users) == 0:
        empty = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg")} | {"n_rows": 0}
        return empty | ({"rows": np.zeros(0)} if rows is not None else {})
    return ranked_metrics_batched(
        score or model.score_fn(), es.users, es.positives, es.exclude, ks, batch_users, rows=rows
    )


def rank_percentiles(
    model: Recommender, pairs: np.ndarray, data: InteractionData, pair_batch: int = 4096, score=None
) -> np.ndarray:
    """Percentile of each pair's item in its user's ranking (1 = top), retained training
    items masked: the per-pair feature of the stopping signal."""
    if len(pairs) == 0:
        return np.zeros(0)
    score = score or model.score_fn()
    users, row_of_pair = np.unique(pairs[:, 0], return_inverse=True)
    train = data.train
    out = np.empty(len(pairs))
    for start in range(0, len(users), 1024):
        chunk = users[start : start + 1024]
        with torch.no_grad():
            s = score(torch.as_tensor(chunk)).clone()
        own = train[np.isin(train[:, 0], chunk)]
        s[torch.as_tensor(np.searchsorted(chunk, own[:, 0])), torch.as_tensor(own[:, 1])] = float("-inf")
        eligible = torch.isfinite(s).sum(1).clamp(min=1).numpy()
        in_chunk = np.flatnonzero((row_of_pair >= start) & (row_of_pair < start + len(chunk)))
        for p0 in range(0, len(in_chunk), pair_batch):
            idx = in_chunk[p0 : p0 + pair_batch]
            rows = torch.as_tensor(row_of_pair[idx] - start)
            ranked = s[rows]
            target = ranked[torch.arange(len(idx)), torch.as_tensor(pairs[idx, 1])]
            higher = (ranked > target.unsqueeze(1)).sum(1).numpy()
            out[idx] = 1.0 - higher / eligible[rows.numpy()]
    return out


def membership_auc(
    model: Recommender, members: np.ndarray, non_members: np.ndarray, data: InteractionData, score=None
) -> float | None:
    """AUC of telling forgotten pairs from held-out pairs by rank percentile (0.5 = cannot);
    None when there is nothing to compare (an item-only batch: pairs with a deleted item are
    no membership question)."""
    if len(members) == 0 or len(non_members) == 0:
        return None
    score = score or model.score_fn()
    a = rank_percentiles(model, members, data, score=score)
    b = rank_percentiles(model, non_members, data, score=score)
    y = np.concatenate([np.ones(len(a)), np.zeros(len(b))])
    return float(roc_auc_score(y, np.concatenate([a, b])))


def shadow_membership(model: Recommender, ctx, gate, reference: Recommender | None = None, score=None) -> dict:
    """The calibrated membership test (tru.audit.shadow) of `model` on the deletion `ctx`:
    forgotten pairs against shadow pairs of the same users or items, the threshold from its
    null (drawn once per context: it does not depend on the model); with `reference` (theta_0)
    also the original's AUC and whether the test has power on this batch."""
    from tru.audit.shadow import membership_test, null_distribution  # why: keeps probes importable alone

    members, non, sm, sn = ctx.membership_strata()
    a = rank_percentiles(model, members, ctx.data, score=score)
    b = rank_percentiles(model, non, ctx.data, score=score)
    key = (gate.membership_permutations, ctx.seed)
    cache = ctx.__dict__.setdefault("_shadow_null", {})
    if key not in cache and len(members) and len(non):
        # drawn on distinct values: the null then depends on the strata alone, not on any
        # model's ties, so the stop rule and the gate of a batch use the same threshold
        distinct = np.arange(len(members) + len(non), dtype=float)
        cache[key] = null_distribution(
            distinct[: len(members)], distinct[len(members) :], sm, sn, gate.membership_permutations, ctx.seed
        )
    ref = None
    if reference is not None:
        ref = (rank_percentiles(reference, members, ctx.data), rank_percentiles(reference, non, ctx.data))
    return membership_test(
        a,
        b,
        sm,
        sn,
        gate.membership_quantile,
        gate.membership_min_effect,
        gate.membership_permutations,
        ctx.seed,
        reference=ref,
        null=cache.get(key),
    )
