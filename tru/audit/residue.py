"""The item-side residue check of an erasure audit (docs: Audits and evidence).

Deleted users (fake accounts among them) leave traces in parameters every user shares: an
item they pushed (a backdoor or bandwagon target) can keep ranking high for everyone after an
approximate erasure. The check asks, for every item that lost a large share of its training
interactions to the batch (and every item an operator declared a backdoor target): does the
item rank higher among retained users than items of the same *retained* popularity, its
peers? A retrain without the batch ranks an item roughly like its popularity peers; a pushed
item ranks far above them. No retrained model is needed.

Standing of an item: its mean rank percentile (1 = top) over the retained users who did not
train on it, each user's ranking over the recommendable items with the user's own training
items masked. Its z: (its standing - the median standing of its `n_peers` peers) / (1.4826 x
the peers' median absolute deviation), a robust z-score.

Calibration, without a retrain: the same z is computed for every recommendable item the
batch did not touch, against its own peers; a checked item is *above* when it ranks further
above its popularity peers than any item the batch did not touch (z above the largest of those
reference z's). Checking k items against N reference items, at least one exchangeable (not
pushed) item is above with probability k / (N + k), and at least j with probability
prod_{i<j} (k - i) / (N + k - i) (the top j of the N + k z's all checked). A batch's above items
are flagged when there are more of them than chance gives in `alpha` of exact erasures
(`allowed_above`, the largest j - 1 whose probability exceeds alpha): on ML-100k, with about 80
checked items and 1,500 references, one item above happens in 5% of exact erasures and two in
0.3%, so one is allowed and two are flagged.

A declared target (an operator's declared backdoor target, or the canary's target when the batch
deletes the canary) is a hypothesis stated before looking, not one of many items searched for
the most extreme: it is flagged above the (1 - alpha / d) quantile of the same reference z's, d
the number of declared targets (`declared_alpha`, audit.gate.residue_declared_alpha). An
exchangeable declared item is then flagged with probability about alpha / d, and a cold target
a bandwagon attack pushed, which stands out from its peers but not from the most extreme of
~1,500 untouched items, is caught.

What it sees: items lifted above their popularity peers by shared parameters. A pushed
*popular* item is compared with popular peers and must stand out among them, which a push
that only keeps it where it was does not. What it cannot see: residue that does not lift an
item, e.g. the memorised pairs of an interaction-level deletion (the membership check covers
those), or a push too weak to stand out from the natural spread of its peers.
"""

from __future__ import annotations

import numpy as np
import torch

MAD_TO_SD = 1.4826  # the MAD of a normal sample times this estimates its standard deviation
MIN_SPREAD = 1e-6  # floor of the peers' spread: identical peers must not divide by zero
PEER_CHUNK = 512  # items whose peers are chosen at once (a [chunk, reference items] key table)


def _own_columns(train: np.ndarray, users: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training pairs of `users` (sorted, unique) on items of `cand` (sorted, unique) as
    (row of the user in `users`, column of the item in `cand`), ordered by row, and per row r
    the slice bounds[r]:bounds[r + 1] of its pairs."""
    train = np.asarray(train, np.int64).reshape(-1, 2)
    row = np.searchsorted(users, train[:, 0])
    col = np.searchsorted(cand, train[:, 1])
    mine = (row < len(users)) & (col < len(cand))
    mine[mine] = (users[row[mine]] == train[mine, 0]) & (cand[col[mine]] == train[mine, 1])
    order = np.argsort(row[mine], kind="stable")
    rows, cols = row[mine][order], col[mine][order]
    return rows, cols, np.searchsorted(rows, np.arange(len(users) + 1))


def _higher_counts(scores: torch.Tensor) -> torch.Tensor:
    """Per entry of each row: how many entries of its row score strictly higher (one sort; a
    tie gets the position of the first of its run)."""
    ordered, where = torch.sort(scores, dim=1, descending=True)
    position = torch.arange(scores.shape[1]).expand_as(ordered)
    run_start = torch.ones_like(ordered, dtype=torch.bool)
    run_start[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    first = torch.cummax(torch.where(run_start, position, 0), dim=1).values
    return torch.empty_like(where).scatter_(1, where, first)


def item_standing(
    model, train: np.ndarray, users: np.ndarray, candidates: np.ndarray, batch_users: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """For every item index 0..model.n_items-1: its mean rank percentile (1 = top of the
    ranking, 0 = bottom) over `users` (each counted once) who did not train on it, and its
    median rank (1 = top) over the same users. Rankings are over `candidates` only, each
    user's own `train` items masked out (not counted in the ranking, and the item is skipped
    for that user); ties count strictly higher scores (rank = higher + 1, percentile =
    1 - higher / eligible items). Items outside `candidates`, or that every user trained on: nan.

    Users are scored `batch_users` at a time; the ranks are kept as a compact
    [users, candidates] integer table for the medians."""
    n_items = int(model.n_items)
    users = np.unique(np.asarray(users, np.int64))
    cand = np.unique(np.asarray(candidates, np.int64))
    percentile = np.full(n_items, np.nan)
    median_rank = np.full(n_items, np.nan)
    if len(users) == 0 or len(cand) == 0:
        return percentile, median_rank
    own_rows, own_cols, bounds = _own_columns(train, users, cand)
    absent = len(cand) + 1  # the rank of a skipped pair: sorts after every real rank
    ranks = np.full((len(users), len(cand)), absent, np.int16 if absent <= np.iinfo(np.int16).max else np.int32)
    pct_sum = np.zeros(len(cand))
    seen = np.zeros(len(cand), np.int64)
    cand_t = torch.as_tensor(cand)
    score = model.score_fn()
    for start in range(0, len(users), batch_users):
        chunk = users[start : start + batch_users]
        with torch.no_grad():
            sc = score(torch.as_tensor(chunk))[:, cand_t]  # a copy: the masking below stays local
        lo, hi = bounds[start], bounds[start + len(chunk)]
        sc[torch.as_tensor(own_rows[lo:hi] - start), torch.as_tensor(own_cols[lo:hi])] = float("-inf")
        valid = torch.isfinite(sc)
        eligible = valid.sum(1, keepdim=True).clamp(min=1).double()
        # masked items sit at -inf, after every eligible one: they are never counted as higher
        higher = _higher_counts(sc)
        pct_sum += torch.where(valid, 1.0 - higher.double() / eligible, 0.0).sum(0).numpy()
        seen += valid.sum(0).numpy()
        ranks[start : start + len(chunk)] = torch.where(valid, higher + 1, absent).numpy()
    has = seen > 0
    percentile[cand[has]] = pct_sum[has] / seen[has]
    for j in range(0, len(cand), PEER_CHUNK):
        block = np.sort(ranks[:, j : j + PEER_CHUNK], axis=0)
        k = seen[j : j + PEER_CHUNK]
        cols = np.arange(block.shape[1])
        mid = (block[np.maximum(k - 1, 0) // 2, cols] + block[k // 2, cols].astype(np.float64)) / 2.0
        median_rank[cand[j : j + PEER_CHUNK]] = np.where(k > 0, mid, np.nan)
    return percentile, median_rank


def _peer_z(
    items: np.ndarray, pool: np.ndarray, percentile: np.ndarray, popularity: np.ndarray, n_peers: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per item of `items`: its z against its peers, the `n_peers` items of `pool` (sorted)
    nearest in `popularity` (ties: lower index), the item itself excluded; and the peers'
    median percentile. nan where no peer is left."""
    z = np.full(len(items), np.nan)
    peer_median = np.full(len(items), np.nan)
    k = min(n_peers, len(pool))
    if len(items) == 0 or k == 0:
        return z, peer_median
    pool_pop, pool_pct = popularity[pool], percentile[pool]
    never = np.iinfo(np.int64).max
    for s in range(0, len(items), PEER_CHUNK):
        chunk = items[s : s + PEER_CHUNK]
        # one key per (item, candidate peer): distance first, then index (pool is sorted)
        key = np.abs(pool_pop[None, :] - popularity[chunk][:, None]) * len(pool) + np.arange(len(pool))
        key[pool[None, :] == chunk[:, None]] = never
        nearest = np.argpartition(key, k - 1, axis=1)[:, :k]
        peers = np.where(np.take_along_axis(key, nearest, 1) == never, np.nan, pool_pct[nearest])
        ok = np.isfinite(peers).any(1)
        med = np.full(len(chunk), np.nan)
        mad = np.full(len(chunk), np.nan)
        med[ok] = np.nanmedian(peers[ok], axis=1)
        mad[ok] = np.nanmedian(np.abs(peers[ok] - med[ok, None]), axis=1)
        z[s : s + len(chunk)] = (percentile[chunk] - med) / np.maximum(MAD_TO_SD * mad, MIN_SPREAD)
        peer_median[s : s + len(chunk)] = med
    return z, peer_median


def allowed_above(checked: int, references: int, alpha: float) -> tuple[int, float]:
    """How many of `checked` exchangeable items may rank above the largest of `references`
    reference z's before it is more than chance in `alpha` of batches, and the chance that one
    more would: (j - 1, P(at least j above)) for the smallest j with P <= alpha (module
    docstring). When even all of them above is not that rare (few references): (checked, P(all
    above)), nothing can be flagged. With no checked item: (0, 0.0)."""
    chance = 1.0
    for j in range(1, checked + 1):
        chance *= (checked - j + 1) / (references + checked - j + 1)
        if chance <= alpha:
            return j - 1, chance
    return checked, (chance if checked else 0.0)


def _rounded(x: float) -> float | None:
    return round(float(x), 6) if np.isfinite(x) else None


def item_residue(
    model,
    train: np.ndarray,
    users: np.ndarray,
    candidates: np.ndarray,
    checked: np.ndarray,
    declared: np.ndarray | None = None,
    n_peers: int = 50,
    declared_alpha: float = 0.01,
    alpha: float = 0.01,
) -> dict:
    """The residue check (see the module docstring) of the `checked` items (those that lost a
    set share of their training interactions to the batch) and the `declared` backdoor
    targets (always checked), ranked for `users` (retained real users) under `model`.

    `train`: the retained training pairs [n, 2] (masking, and retained popularity = an item's
    count in it); `candidates`: the recommendable items (checked or declared items outside
    them are dropped: they cannot be recommended). Peers of an item: the `n_peers` candidate
    items nearest in retained popularity (ties: lower index), neither the item itself nor any
    checked or declared item. `threshold`: the largest z among the reference items (every
    candidate neither checked, declared nor trained on by every user, against its own peers);
    None when there are fewer than n_peers + 1 of them, and then nothing is flagged.
    `declared_threshold`: the (1 - declared_alpha / d) quantile of the reference z's (d declared
    targets, the quantile's "higher" value), which declared items are judged by instead.
    Undeclared items above `threshold` are flagged only when more than `allowed_above` are
    (chance_above: the probability that as many as allowed_above + 1 exchangeable items are;
    module docstring), so that an exact erasure is flagged in at most `alpha` of batches.

    Returns a JSON-able dict: counts, the threshold and per checked item (z descending) its
    retained interactions, percentile, median rank, the peers' median percentile, z, whether
    it is flagged and whether it was declared (nan values as None)."""
    if n_peers < 1:
        raise ValueError(f"n_peers must be at least 1, got {n_peers}")
    for name, a in (("declared_alpha", declared_alpha), ("alpha", alpha)):
        if not 0 < a < 1:
            raise ValueError(f"{name} must be in (0, 1), got {a}")
    n_items = int(model.n_items)
    train = np.asarray(train, np.int64).reshape(-1, 2)
    cand = np.unique(np.asarray(candidates, np.int64))
    declared_items = np.intersect1d(np.asarray([] if declared is None else declared, np.int64), cand)
    checked_items = np.union1d(np.intersect1d(np.asarray(checked, np.int64), cand), declared_items)
    percentile, median_rank = item_standing(model, train, users, cand)
    popularity = np.bincount(train[:, 1], minlength=n_items)
    pool = np.setdiff1d(cand[np.isfinite(percentile[cand])], checked_items)
    threshold = declared_threshold = None
    if len(pool) >= n_peers + 1:
        ref = _peer_z(pool, pool, percentile, popularity, n_peers)[0]
        ref = ref[np.isfinite(ref)]
        threshold = float(np.max(ref))
        level = 1 - declared_alpha / max(1, len(declared_items))
        declared_threshold = float(np.quantile(ref, level, method="higher"))
    z, peer_median = _peer_z(checked_items, pool, percentile, popularity, n_peers)
    is_declared = np.isin(checked_items, declared_items)
    above = np.zeros(len(z), bool)
    allowed, chance = 0, None
    if threshold is not None and declared_threshold is not None:
        above = np.isfinite(z) & (z > np.where(is_declared, declared_threshold, threshold))
        allowed, chance = allowed_above(int((~is_declared).sum()), int(len(ref)), alpha)
    # declared items flagged above their own threshold; the searched ones only beyond chance
    flagged = above & (is_declared | (int((above & ~is_declared).sum()) > allowed))
    order = sorted(range(len(checked_items)), key=lambda j: (-z[j] if np.isfinite(z[j]) else np.inf, checked_items[j]))
    rows = [
        {
            "item": int(checked_items[j]),
            "retained_interactions": int(popularity[checked_items[j]]),
            "percentile": _rounded(percentile[checked_items[j]]),
            "median_rank": _rounded(median_rank[checked_items[j]]),
            "peer_percentile": _rounded(peer_median[j]),
            "z": _rounded(z[j]),
            "above": bool(above[j]),
            "flagged": bool(flagged[j]),
            "declared": bool(is_declared[j]),
        }
        for j in order
    ]
    return {
        "checked": int(len(checked_items)),
        "flagged": int(flagged.sum()),
        "above": int((above & ~is_declared).sum()),
        "allowed_above": allowed,
        "chance_above": None if chance is None else round(chance, 6),
        "alpha": float(alpha),
        "threshold": None if threshold is None else round(threshold, 6),
        "declared_threshold": None if declared_threshold is None else round(declared_threshold, 6),
        "declared_alpha": float(declared_alpha),
        "reference_items": int(len(pool)),
        "n_peers": int(n_peers),
        "users": int(len(np.unique(np.asarray(users, np.int64)))),
        "items": rows,
    }


def residue_items(ctx, gate, declared=()) -> tuple[np.ndarray, np.ndarray]:
    """The items the item-side residue check looks at: those that lost at least
    `gate.residue_min_removed_share` of their training interactions to the batch, and at least
    `gate.residue_min_removed` of them, and the declared backdoor targets (still in the
    catalogue)."""
    declared = np.intersect1d(np.asarray(declared, np.int64), ctx.data.candidates)
    losing = ctx.items_losing(gate.residue_min_removed_share, at_least=gate.residue_min_removed)
    return np.setdiff1d(losing, declared), declared
