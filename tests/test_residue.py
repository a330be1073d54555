"""The item-side residue check on hand-built score models: a planted push is flagged (checked
or declared), a push-free model flags nothing, and item_standing agrees with a brute-force
ranking."""

import json

import numpy as np
import pytest
import torch

from tru.audit.residue import allowed_above, item_residue, item_standing

N_USERS, N_ITEMS, N_COLD = 120, 200, 60
PUSHED, UNPUSHED = 0, 1  # both cold (2 retained interactions)
USERS = np.arange(N_USERS)
ALL_ITEMS = np.arange(N_ITEMS)


class FixedScores:
    """Scores are dot products of fixed user and item embedding matrices."""

    def __init__(self, user_emb: np.ndarray, item_emb: np.ndarray):
        self.user_emb = torch.as_tensor(user_emb)
        self.item_emb = torch.as_tensor(item_emb)
        self.n_items = item_emb.shape[0]

    def score_fn(self):
        return lambda users: self.user_emb[users] @ self.item_emb.T


def world(seed: int, push: bool, taste: float = 1.0) -> tuple[FixedScores, np.ndarray]:
    """Retained training pairs (items 0..N_COLD-1 cold, 2 interactions each; the rest 3-59)
    and a model whose scores follow log popularity plus per-user taste of weight `taste`.
    With `push`, item PUSHED gets an extra dimension every user likes: the residue of
    deleted fake users who promoted it."""
    rng = np.random.default_rng(seed)
    popularity = np.r_[np.full(N_COLD, 2), rng.integers(3, 60, N_ITEMS - N_COLD)]
    train = np.concatenate(
        [np.stack([rng.choice(N_USERS, p, replace=False), np.full(p, i)], 1) for i, p in enumerate(popularity)]
    )
    dim = 8
    user_emb = np.c_[np.ones(N_USERS), rng.normal(size=(N_USERS, dim)) / np.sqrt(dim), np.ones(N_USERS)]
    item_emb = np.c_[0.5 * np.log1p(popularity), taste * rng.normal(size=(N_ITEMS, dim)), np.zeros(N_ITEMS)]
    if push:
        item_emb[PUSHED, -1] = 3.0
    return FixedScores(user_emb, item_emb), train


def _row(result: dict, item: int) -> dict:
    return next(r for r in result["items"] if r["item"] == item)


def test_planted_push_is_flagged_and_its_unpushed_twin_is_not():
    model, train = world(0, push=True)
    result = item_residue(model, train, USERS, ALL_ITEMS, np.array([PUSHED, UNPUSHED]), n_peers=20)
    pushed, twin = _row(result, PUSHED), _row(result, UNPUSHED)
    assert result["checked"] == 2 and result["flagged"] == 1
    assert result["reference_items"] == N_ITEMS - 2 and result["users"] == N_USERS
    assert pushed["flagged"] and pushed["z"] > result["threshold"]
    assert not twin["flagged"] and twin["z"] <= result["threshold"]
    assert pushed["retained_interactions"] == twin["retained_interactions"] == 2
    # the same cold peers for both, and items sorted by z descending
    assert pushed["peer_percentile"] == twin["peer_percentile"] < 0.5 < pushed["percentile"]
    assert [r["item"] for r in result["items"]] == [PUSHED, UNPUSHED]
    assert not pushed["declared"]


def test_declared_target_is_flagged_and_reported():
    model, train = world(0, push=True)
    # a declared item outside the candidates (deleted from the catalogue) is dropped silently
    candidates = np.setdiff1d(ALL_ITEMS, [N_ITEMS - 1])
    result = item_residue(
        model, train, USERS, candidates, np.zeros(0, np.int64), declared=np.array([PUSHED, N_ITEMS - 1]), n_peers=20
    )
    assert result["checked"] == 1 and result["flagged"] == 1
    (row,) = result["items"]
    assert row["item"] == PUSHED and row["declared"] and row["flagged"]
    assert row["median_rank"] <= 5 and row["percentile"] > 0.9


def test_a_weak_push_on_a_declared_target_is_flagged_and_the_same_item_unnamed_is_not():
    # a push that lifts the item above its peers but not above the most extreme untouched item:
    # named before looking (declared), it is judged at the reference z's (1 - alpha) quantile
    model, train = world(0, push=True)
    model.item_emb[PUSHED, -1] = 0.0
    alpha = 0.1  # 199 reference items: its quantile lies well below their largest z
    ref = item_residue(model, train, USERS, ALL_ITEMS, np.array([PUSHED]), n_peers=20, declared_alpha=alpha)
    z0 = _row(ref, PUSHED)["z"]
    lo, hi = ref["declared_threshold"], ref["threshold"]
    assert lo < hi
    # the smallest push that puts the item strictly between the two thresholds
    for push in np.linspace(0.0, 3.0, 601):
        model.item_emb[PUSHED, -1] = push
        undeclared = item_residue(model, train, USERS, ALL_ITEMS, np.array([PUSHED]), n_peers=20)
        if lo < _row(undeclared, PUSHED)["z"] < hi:
            break
    else:
        raise AssertionError(f"no push between the thresholds {lo} and {hi} (z without push {z0})")
    none = np.zeros(0, np.int64)
    declared = item_residue(model, train, USERS, ALL_ITEMS, none, np.array([PUSHED]), n_peers=20, declared_alpha=alpha)
    assert not _row(undeclared, PUSHED)["flagged"] and undeclared["flagged"] == 0
    assert _row(declared, PUSHED)["flagged"] and declared["flagged"] == 1
    assert _row(declared, PUSHED)["z"] > declared["declared_threshold"]
    # and the unpushed twin, declared, is not flagged (it sits among its peers)
    twin = item_residue(model, train, USERS, ALL_ITEMS, none, np.array([UNPUSHED]), n_peers=20, declared_alpha=alpha)
    assert twin["flagged"] == 0 and twin["declared_alpha"] == alpha


def test_declared_threshold_is_a_quantile_of_the_reference_items():
    model, train = world(3, push=False, taste=0.3)
    one = item_residue(model, train, USERS, ALL_ITEMS, np.zeros(0, np.int64), np.array([5]), n_peers=20)
    loose = item_residue(
        model, train, USERS, ALL_ITEMS, np.zeros(0, np.int64), np.array([5]), n_peers=20, declared_alpha=0.2
    )
    two = item_residue(model, train, USERS, ALL_ITEMS, np.zeros(0, np.int64), np.array([5, 6]), n_peers=20)
    # more declared targets: a stricter quantile each (alpha / d), never above the largest z
    assert loose["declared_threshold"] < one["declared_threshold"] <= one["threshold"]
    assert one["declared_threshold"] <= two["declared_threshold"] <= two["threshold"]
    # about a fifth of the references lie above the alpha = 0.2 quantile
    assert loose["reference_items"] == N_ITEMS - 1


def test_push_free_model_flags_nothing():
    flagged = 0
    for seed in range(10):
        model, train = world(seed, push=False, taste=0.1)
        checked = np.random.default_rng([seed, 1]).choice(N_ITEMS, 10, replace=False)
        result = item_residue(model, train, USERS, ALL_ITEMS, checked, n_peers=20)
        assert result["checked"] == 10 and result["reference_items"] == N_ITEMS - 10
        if seed == 0:
            assert result["flagged"] == 0
        flagged += result["flagged"]
    # calibration: an untouched item beats the largest of N reference z's with chance ~1/(N+1);
    # 100 checks against ~190 references: ~0.5 false flags expected
    assert flagged <= 2


def test_no_checked_item_still_calibrates():
    model, train = world(0, push=True)
    result = item_residue(model, train, USERS, ALL_ITEMS, np.zeros(0, np.int64), n_peers=20)
    assert result["checked"] == 0 and result["flagged"] == 0 and result["items"] == []
    assert result["threshold"] is not None and result["reference_items"] == N_ITEMS
    too_few = item_residue(model, train, USERS, np.arange(20), np.zeros(0, np.int64), n_peers=20)
    assert too_few["threshold"] is None and too_few["reference_items"] == 20


def _brute_force(scores: np.ndarray, train: np.ndarray, users: np.ndarray, candidates: np.ndarray):
    n_items = scores.shape[1]
    percentiles: list[list[float]] = [[] for _ in range(n_items)]
    ranks: list[list[int]] = [[] for _ in range(n_items)]
    for u in users:
        own = set(train[train[:, 0] == u, 1].tolist())
        eligible = [i for i in candidates if i not in own]
        for i in eligible:
            higher = sum(scores[u, j] > scores[u, i] for j in eligible)
            percentiles[i].append(1 - higher / len(eligible))
            ranks[i].append(higher + 1)
    pct = np.array([np.mean(p) if p else np.nan for p in percentiles])
    med = np.array([np.median(r) if r else np.nan for r in ranks])
    return pct, med


def test_item_standing_matches_brute_force():
    rng = np.random.default_rng(3)
    n_users, n_items = 5, 8
    user_emb = rng.integers(-2, 3, size=(n_users, 2)).astype(np.float64)
    item_emb = rng.integers(-2, 3, size=(n_items, 2)).astype(np.float64)  # integer scores: many ties
    model = FixedScores(user_emb, item_emb)
    scores = user_emb @ item_emb.T
    # user 0 trained on items 1 and 7 (7 is no candidate), user 2 on item 3; item 5 by every user
    train = np.array([[0, 1], [0, 7], [2, 3]] + [[u, 5] for u in range(n_users)])
    candidates = np.array([0, 1, 2, 3, 4, 5, 6])
    users = np.array([0, 1, 2, 3])
    pct, med = item_standing(model, train, users, candidates)
    want_pct, want_med = _brute_force(scores, train, users, candidates)
    np.testing.assert_allclose(pct, want_pct, equal_nan=True)
    np.testing.assert_allclose(med, want_med, equal_nan=True)
    assert np.isnan(pct[7]) and np.isnan(med[7])  # no candidate
    assert np.isnan(pct[5]) and np.isnan(med[5])  # every user trained on it
    assert np.isfinite(pct[:5]).all() and np.isfinite(pct[6])
    # the chunking of users does not change anything
    pct_small, med_small = item_standing(model, train, users, candidates, batch_users=3)
    np.testing.assert_array_equal(pct_small, pct)
    np.testing.assert_array_equal(med_small, med)


def test_deterministic_and_json_able():
    model, train = world(0, push=True)
    checked = np.array([PUSHED, UNPUSHED, 77, 150])
    a = item_residue(model, train, USERS, ALL_ITEMS, checked, declared=np.array([PUSHED]), n_peers=20)
    b = item_residue(model, train, USERS, ALL_ITEMS, checked, declared=np.array([PUSHED]), n_peers=20)
    assert a == b
    assert json.loads(json.dumps(a, allow_nan=False)) == a
    assert [r["z"] for r in a["items"]] == sorted((r["z"] for r in a["items"]), reverse=True)


def test_one_item_above_by_chance_is_allowed_and_two_are_flagged():
    """Searching k items against N references, one of them above every reference is chance in
    k / (N + k) of exact erasures; the check flags only a count rarer than `alpha`."""
    # hand-computed: 88 items against 1,500 (ML-100k's scale) allow one, two are 0.3% chance
    assert allowed_above(88, 1500, 0.01) == (1, pytest.approx(88 / 1588 * 87 / 1587))
    assert allowed_above(2, 198, 0.01) == (0, pytest.approx(0.01))
    assert allowed_above(1, 50, 0.01) == (1, pytest.approx(1 / 51))  # never that rare: nothing can be flagged
    assert allowed_above(0, 100, 0.01) == (0, 0.0)
    model, train = world(0, push=True)
    others = np.random.default_rng(7).choice(np.arange(2, N_ITEMS), 9, replace=False)
    checked = np.r_[PUSHED, others]
    one = item_residue(model, train, USERS, ALL_ITEMS, checked, n_peers=20)
    assert one["allowed_above"] == 1 and one["above"] == 1 and one["flagged"] == 0
    assert _row(one, PUSHED)["above"] and not _row(one, PUSHED)["flagged"]
    # with a looser alpha the single item is flagged (10 of 200: chance 5%)
    loose = item_residue(model, train, USERS, ALL_ITEMS, checked, n_peers=20, alpha=0.1)
    assert loose["allowed_above"] == 0 and loose["flagged"] == 1
    model.item_emb[UNPUSHED, -1] = 3.0  # a second pushed item among the checked ones
    two = item_residue(model, train, USERS, ALL_ITEMS, np.r_[checked, UNPUSHED], n_peers=20)
    assert two["above"] == 2 and two["flagged"] == 2 and two["allowed_above"] == 1
    assert _row(two, PUSHED)["flagged"] and _row(two, UNPUSHED)["flagged"]
