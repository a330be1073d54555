import numpy as np
import pytest
import torch
from conftest import assert_rows_loss_matches

from tru.models import build_backbone
from tru.models.graph import clear_graph_cache, knn_graph, normalized_bipartite, unique_pairs


def small_params(params):
    return params.model.mgcn.model_copy(update={"embedding_dim": 16, "knn_k": 5}).model_dump()


def test_forward_shapes_and_every_branch_gets_gradients(params, tiny_data):
    d = tiny_data
    torch.manual_seed(0)
    model = build_backbone("mgcn", small_params(params), d.n_users, d.n_items, d.features)
    model.set_graph(d.train)
    u, i = model.embeddings()
    assert u.shape == (d.n_users, 16) and i.shape == (d.n_items, 16)
    users = torch.as_tensor(d.train[:32, 0])
    pos = torch.as_tensor(d.train[:32, 1])
    neg = torch.as_tensor((d.train[:32, 1] + 1) % d.n_items)
    loss, parts = model.loss(users, pos, neg)
    assert torch.isfinite(loss) and set(parts) == {"bpr", "reg", "cl"}
    loss.backward()
    branches = model.branches()
    assert set(branches) == {"id", "signal", "noise", "fusion"}
    named = dict(model.named_parameters())
    # every parameter belongs to exactly one branch and to exactly one selection module
    flat = [n for names in branches.values() for n in names]
    assert sorted(flat) == sorted(named)
    mods = [n for names in model.selection_modules().values() for n in names]
    assert sorted(mods) == sorted(named)
    for branch, names in branches.items():
        grad = sum(float(named[n].grad.abs().sum()) for n in names if named[n].grad is not None)
        assert grad > 0, f"branch {branch} got no gradient"


def test_all_zero_feature_rows_stay_finite(params, tiny_data):
    d = tiny_data
    feats = dict(d.features)
    feats["signal"] = feats["signal"].copy()
    feats["signal"][:10] = 0.0  # items without content (ML-100k: 438 without KG links)
    model = build_backbone("mgcn", small_params(params), d.n_users, d.n_items, feats)
    model.set_graph(d.train)
    loss, _ = model.loss(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([2, 3]))
    assert torch.isfinite(loss)
    g = model.knn["signal"].to_dense()
    assert torch.isfinite(g).all()
    # a content-less item keeps only its self-loop and is nobody's neighbour
    for item in range(10):
        assert torch.nonzero(g[item]).flatten().tolist() == [item]
        assert int((g[10:, item] != 0).sum()) == 0


def test_knn_graph_rows_and_deleted_items():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 5)).astype(np.float32)
    g = knn_graph(x, k=4).to_dense()
    assert ((g != 0).sum(1) == 4).all()
    assert (torch.diagonal(g) > 0).all()
    active = np.ones(30, dtype=bool)
    active[[3, 7]] = False
    g2 = knn_graph(x, k=4, active=active).to_dense()
    assert float(g2[:, [3, 7]].abs().sum()) == 0 and float(g2[[3, 7]].abs().sum()) == 0


def _knn_by_stable_sort(x: np.ndarray, k: int, active: np.ndarray) -> np.ndarray:
    """The kNN graph's neighbour sets by definition: each active row's k most similar usable
    items by cosine, itself first, ties to the lower index (a stable sort of the whole row)."""
    norms = np.linalg.norm(x, axis=1)
    usable = active & (norms > 1e-12)
    xn = x / np.maximum(norms, 1e-12)[:, None]
    k_eff = max(1, min(k, int(usable.sum())))
    out = np.zeros((len(x), len(x)), bool)
    for r in np.flatnonzero(active):
        sim = (xn @ xn[r]).astype(np.float64)
        sim[~usable] = -np.inf
        sim[r] = np.inf
        top = np.argsort(-sim, kind="stable")[:k_eff]
        out[r, top[np.isfinite(sim[top]) | (top == r)]] = True
        if not usable[r]:
            out[r] = False
            out[r, r] = True
    return out


def test_knn_graph_keeps_the_stable_sorts_neighbours_ties_to_the_lower_index():
    # duplicated rows tie exactly: which of them a row keeps is decided by index, in every block
    rng = np.random.default_rng(3)
    base = rng.normal(size=(9, 4)).astype(np.float32)
    x = np.concatenate([base, base, base[:5], np.zeros((2, 4), np.float32)])  # 25 items, 2 without content
    active = np.ones(len(x), dtype=bool)
    active[[4, 20]] = False
    for k in (1, 3, 5, 40):
        g = knn_graph(x, k=k, active=active, block=7).to_dense().numpy() != 0
        assert (g == _knn_by_stable_sort(x.astype(np.float64), k, active)).all(), k
    # the graph is the same whatever the block size
    a = knn_graph(x, k=3, active=active, block=7).to_dense()
    assert torch.equal(a, knn_graph(x, k=3, active=active).to_dense())


def test_knn_graphs_are_built_once_per_inputs():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    active = np.ones(20, dtype=bool)
    active[5] = False
    clear_graph_cache()
    g = knn_graph(x, k=3, active=active)
    assert knn_graph(x.copy(), k=3, active=active.copy()) is g  # same inputs, equal bytes: the same graph
    assert knn_graph(x.astype(np.float64), k=3, active=active) is g  # computed in float32 either way
    others = [knn_graph(x, k=4, active=active), knn_graph(x, k=3), knn_graph(x + 1, k=3, active=active)]
    assert all(o is not g for o in others)
    assert not torch.equal(others[0].to_dense(), g.to_dense())
    clear_graph_cache()
    fresh = knn_graph(x, k=3, active=active)
    assert fresh is not g and torch.equal(fresh.to_dense(), g.to_dense())


def test_unique_pairs_is_numpys_row_unique():
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, 6, size=(200, 2))
    assert np.array_equal(unique_pairs(pairs, n_items=6), np.unique(pairs, axis=0))
    with pytest.raises(ValueError):
        unique_pairs(np.array([[0, 6]]), n_items=6)


def test_bipartite_normalisation_symmetric_and_isolated_nodes_finite():
    pairs = np.array([[0, 0], [0, 1], [1, 1]])
    a = normalized_bipartite(pairs, n_users=3, n_items=3).to_dense()
    assert torch.allclose(a, a.T)
    # edge (u0, i1): deg(u0) = 2, deg(i1) = 2 -> 1/2
    assert a[0, 3 + 1].item() == pytest.approx(0.5)
    assert float(a[2].abs().sum()) == 0  # user 2 has no edges
    assert torch.isfinite(a).all()


def test_graph_rebuilt_from_given_pairs(params, tiny_data):
    d = tiny_data
    model = build_backbone("mgcn", small_params(params), d.n_users, d.n_items, d.features)
    model.set_graph(d.train)
    before = model.norm_adj.to_dense()
    keep = d.train[d.train[:, 0] != 0]
    model.set_graph(keep)
    after = model.norm_adj.to_dense()
    assert float(before[0].abs().sum()) > 0 and float(after[0].abs().sum()) == 0


@pytest.mark.parametrize(("side", "rows"), [("user", [0, 3, 7]), ("item", [1, 4, 9])])
def test_the_rows_loss_equals_the_loss_while_only_those_rows_move(params, tiny_data, side, rows):
    """The re-fits' shortcuts (Recommender.user_rows_loss, item_rows_loss): the same loss and
    the same gradient on the re-fitted rows as the whole forward pass (for items: the content
    view and every modality view read them), before and after those rows move; the other rows
    get no gradient."""
    d = tiny_data
    torch.manual_seed(0)
    model = build_backbone("mgcn", small_params(params), d.n_users, d.n_items, d.features)
    model.set_graph(d.train)
    rows = np.array(rows)
    col = 0 if side == "user" else 1
    local = model.user_rows_loss(rows) if side == "user" else model.item_rows_loss(rows)
    assert local is not None
    pick = np.flatnonzero(np.isin(d.train[:, col], rows))[:40]
    users, pos = torch.as_tensor(d.train[pick, 0]), torch.as_tensor(d.train[pick, 1])
    neg = torch.as_tensor((d.train[pick, 1] * 7 + 3) % d.n_items)
    n = d.n_users if side == "user" else d.n_items
    assert_rows_loss_matches(model, f"{side}_embedding", local, rows, users, pos, neg, n)
