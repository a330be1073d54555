import math

import numpy as np
import pytest
import torch

from tru.metrics import rank_metrics, ranked_metrics_batched


def approx(x):
    return pytest.approx(x, abs=1e-9)


def test_recall_and_ndcg_hand_computed():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.1]])
    m = rank_metrics(scores, [[0, 2]], ks=(1, 2, 3))
    assert m["recall@1"] == approx(0.5)
    assert m["recall@2"] == approx(0.5)
    assert m["recall@3"] == approx(1.0)
    # DCG@2 = 1/log2(2); ideal over min(2, 2) hits = 1 + 1/log2(3)
    assert m["ndcg@2"] == approx(1.0 / (1.0 + 1.0 / math.log2(3)))
    # DCG@3 = 1 + 1/log2(4)
    assert m["ndcg@3"] == approx((1.0 + 0.5) / (1.0 + 1.0 / math.log2(3)))


def test_ties_go_to_lower_item_index():
    scores = torch.tensor([[0.5, 0.5, 0.5]])
    m = rank_metrics(scores, [[1]], ks=(1, 2))
    assert m["recall@1"] == approx(0.0)
    assert m["recall@2"] == approx(1.0)
    assert m["ndcg@2"] == approx(1.0 / math.log2(3))


def test_fewer_positives_than_k_uses_ideal_over_positives():
    scores = torch.tensor([[0.4, 0.3, 0.2, 0.1]])
    m = rank_metrics(scores, [[2]], ks=(20,))
    assert m["recall@20"] == approx(1.0)
    # one positive at rank 3: DCG = 1/log2(4), ideal = 1 (one hit at rank 1)
    assert m["ndcg@20"] == approx(0.5)


def test_excluded_items_are_masked_before_ranking():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6]])
    m = rank_metrics(scores, [[2]], exclude=[[0, 1]], ks=(1,))
    assert m["recall@1"] == approx(1.0)
    assert m["ndcg@1"] == approx(1.0)


def test_excluded_positive_is_dropped_from_positives():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6]])
    m = rank_metrics(scores, [[0, 2]], exclude=[[0]], ks=(1, 2))
    assert m["recall@1"] == approx(0.0)  # item 1 now ranks first
    assert m["recall@2"] == approx(1.0)  # the only countable positive (2) is at rank 2


def test_rows_without_positives_are_skipped():
    scores = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    m = rank_metrics(scores, [[0], []], ks=(1,))
    assert m["n_rows"] == 1
    assert m["recall@1"] == approx(1.0)


def test_mean_over_rows():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.9, 0.1, 0.0]])
    m = rank_metrics(scores, [[0], [2]], ks=(1,))
    assert m["recall@1"] == approx(0.5)


def test_batched_equals_full():
    rng = np.random.default_rng(0)
    scores = torch.as_tensor(rng.normal(size=(50, 30)), dtype=torch.float32)
    pos = [rng.choice(30, size=rng.integers(0, 5), replace=False) for _ in range(50)]
    exc = [rng.choice(30, size=3, replace=False) for _ in range(50)]
    full = rank_metrics(scores, pos, exc, ks=(5, 10))
    users = np.arange(50)
    batched = ranked_metrics_batched(lambda u: scores[u], users, pos, exc, ks=(5, 10), batch_users=7)
    for key in full:
        assert batched[key] == pytest.approx(full[key])
    # per-user values, kept in the users' order across batches: one per user with a positive
    kept = ranked_metrics_batched(lambda u: scores[u], users, pos, exc, ks=(5, 10), batch_users=7, rows="recall@10")
    counted = [j for j in range(50) if len(np.setdiff1d(pos[j], exc[j]))]
    assert len(kept["rows"]) == len(counted) == full["n_rows"]
    assert kept["rows"].mean() == pytest.approx(full["recall@10"])
    for r, j in zip(kept["rows"], counted, strict=True):
        assert r == pytest.approx(rank_metrics(scores[j : j + 1], [pos[j]], [exc[j]], ks=(10,))["recall@10"])


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        rank_metrics(torch.zeros(2, 3), [[0]])


def test_top_k_order_is_the_head_of_a_stable_descending_sort():
    from tru.metrics import top_k_order

    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (64, 40), generator=g).float()  # many ties
    scores[3] = float("-inf")  # a row with nothing eligible
    scores[5, 7:] = float("-inf")  # fewer eligible items than k
    # real-valued rows (no tie at the k-th score: the fast path) beside tied ones (the slow path)
    scores[32:] = torch.randn(32, 40, generator=g)
    scores[40, 10:] = scores[40, 0]  # a run of ties across every cut-off
    scores[41, ::2] = float("-inf")  # masked items among real values
    for k in (1, 5, 20, 39, 40, 45):
        full = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, : min(k, 40)]
        assert torch.equal(top_k_order(scores, k), full)
