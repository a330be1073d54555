"""MIG-GT on tiny synthetic data: shapes, gradients, receptive fields, sampling, checkpoints."""

import copy

import numpy as np
import pytest
import torch
from conftest import assert_rows_loss_matches

from tru.checkpoint import load_checkpoint, save_checkpoint
from tru.errors import ConfigError
from tru.models import build_backbone
from tru.models.miggt import mgdcf_gamma
from tru.train import EvalSet, fit, seed_everything


def small_params(params, **update):
    return params.model.miggt.model_copy(update={"embedding_dim": 16, "hidden_dim": 32, **update}).model_dump()


def build(params, data, seed=0, **update):
    torch.manual_seed(seed)
    model = build_backbone("miggt", small_params(params, **update), data.n_users, data.n_items, data.features)
    model.set_graph(data.train)
    return model


def batch(data, n=32):
    users = torch.as_tensor(data.train[:n, 0])
    pos = torch.as_tensor(data.train[:n, 1])
    neg = torch.as_tensor((data.train[:n, 1] + 1) % data.n_items)
    return users, pos, neg


def test_forward_shapes_and_every_branch_gets_gradients(params, tiny_data):
    d = tiny_data
    model = build(params, d)
    model.eval()
    u, i = model.embeddings()
    assert u.shape == (d.n_users, 16) and i.shape == (d.n_items, 16)
    assert all(v.shape == (d.n_users + d.n_items, 16) for v in model.branch_outputs().values())
    model.train()
    loss, parts = model.loss(*batch(d))
    assert torch.isfinite(loss) and set(parts) == {"bpr", "reg", "unsmooth"} and parts["unsmooth"] > 0
    loss.backward()
    branches = model.branches()
    assert set(branches) == {"id", "signal", "noise", "fusion"}
    named = dict(model.named_parameters())
    # every parameter belongs to exactly one branch and to exactly one selection module
    assert sorted(n for names in branches.values() for n in names) == sorted(named)
    assert sorted(n for names in model.selection_modules().values() for n in names) == sorted(named)
    for branch, names in branches.items():
        assert sum(float(named[n].grad.abs().sum()) for n in names) > 0, f"branch {branch} got no gradient"


@pytest.mark.parametrize("hops", [{}, {"id": 0, "signal": 0, "noise": 0}, {"id": 1, "signal": 3, "noise": 0}])
def test_every_parameter_gets_a_gradient(params, tiny_data, hops):
    """No built-but-unused parameter: it would look like an untouched module to layer selection."""
    model = build(params, tiny_data, hops=hops)
    model.train()
    loss, _ = model.loss(*batch(tiny_data))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} is not used by loss()"
        # a redundant parameter (a bias before a batch norm) gets float noise (~1e-7), not zero
        assert float(p.grad.abs().sum()) > 1e-5, f"{name} gets no real gradient"


def test_mgdcf_normaliser():
    assert mgdcf_gamma(0.1, 0.9, 0) == 1.0
    assert mgdcf_gamma(0.2, 0.5, 2) == pytest.approx(0.25 + 0.2 * 1.5)
    # alpha = 1 - beta keeps gamma at 1 for every depth
    assert all(mgdcf_gamma(0.1, 0.9, k) == pytest.approx(1.0) for k in range(6))


def neighbours(pairs, user=None, item=None):
    if user is not None:
        return set(pairs[pairs[:, 0] == user, 1].tolist())
    return set(pairs[pairs[:, 1] == item, 0].tolist())


def test_hop_counts_are_respected(params, tiny_data):
    """A branch with 0 hops sees only its own node; with 1 hop it sees its neighbours."""
    d = tiny_data
    nu = d.n_users
    model = build(params, d, hops={"id": 0, "signal": 1, "noise": 0})
    model.eval()  # no dropout; batch norm on running statistics: the encoders act row by row
    with torch.no_grad():
        before = {k: v.clone() for k, v in model.branch_outputs().items()}
        # id, 0 hops: a user is its own embedding; items get nothing from the id branch
        assert torch.equal(before["id"][:nu], model.user_embedding)
        assert float(before["id"][nu:].abs().sum()) == 0
        # noise, 0 hops: users get nothing from it
        assert float(before["noise"][:nu].abs().sum()) == 0

        user, item = int(d.train[0, 0]), int(d.train[0, 1])
        other_user = next(v for v in range(nu) if v != user)
        model.user_embedding[other_user] += 1.0
        model.modal["signal"].features[item] += 1.0
        model.modal["noise"].features[item] += 1.0
        after = model.branch_outputs()

    # 0 hops: changing another node changes nothing here
    assert torch.equal(after["id"][user], before["id"][user])
    assert not torch.equal(after["id"][other_user], before["id"][other_user])
    noise_changed = (after["noise"] != before["noise"]).any(1).nonzero().flatten().tolist()
    assert noise_changed == [nu + item]
    # 1 hop: the item's users see its new features; users who never met it do not
    fans = neighbours(d.train, item=item)
    strangers = [u for u in range(nu) if u not in fans]
    assert user in fans and strangers
    assert not torch.equal(after["signal"][user], before["signal"][user])
    assert all(torch.equal(after["signal"][u], before["signal"][u]) for u in strangers)
    # ... and the user's other items, two hops away, do not either
    two_hops = [i for i in range(d.n_items) if not any(i in neighbours(d.train, user=u) for u in fans) and i != item]
    assert all(torch.equal(after["signal"][nu + i], before["signal"][nu + i]) for i in two_hops)

    # id with 1 hop: an item sees the embedding of a user who took it
    model1 = build(params, d, hops={"id": 1})
    model1.eval()
    with torch.no_grad():
        ref = model1.branch_outputs()["id"].clone()
        model1.user_embedding[user] += 1.0
        moved = model1.branch_outputs()["id"]
    assert not torch.equal(moved[nu + item], ref[nu + item])
    far = [i for i in range(d.n_items) if i not in neighbours(d.train, user=user)]
    assert all(torch.equal(moved[nu + i], ref[nu + i]) for i in far)


def test_unknown_hop_branch_is_an_error(params, tiny_data):
    with pytest.raises(ConfigError, match=r"hops names 'image'.*its branches: id, signal, noise"):
        build(params, tiny_data, hops={"id": 2, "image": 1})
    # a modality of the dataset that is not named gets the default
    model = build(params, tiny_data, hops={"signal": 0}, default_hops=3)
    assert model.hops == {"id": 3, "signal": 0, "noise": 3}


def test_sampling_is_seeded_and_uses_active_items_only(params, tiny_data):
    d = tiny_data
    model = build(params, d)
    # evaluation: the same fixed sample on every call, and in a copy
    model.eval()
    with torch.no_grad():
        u1, i1 = model.embeddings()
        u2, i2 = copy.deepcopy(model).embeddings()
    assert torch.equal(u1, u2) and torch.equal(i1, i2)
    # training: the stream restarts with the graph
    model.train()
    first = [model._samples() for _ in range(2)]
    assert not torch.equal(first[0], first[1])
    model.set_graph(d.train)
    assert all(torch.equal(a, model._samples()) for a in first)
    # the global generator does not drive the sampler (dropout uses it; the memory does not)
    model.set_graph(d.train)
    torch.manual_seed(123)
    assert torch.equal(model._samples(), first[0])
    # a deleted item is nobody's memory
    active = np.ones(d.n_items, dtype=bool)
    active[::2] = False
    model.set_graph(d.train, active)
    for mode in (True, False):
        model.train(mode)
        assert np.isin(model._samples().numpy(), np.flatnonzero(active)).all()


def quick(params, epochs=10):
    return params.train.model_copy(update={"max_epochs": epochs, "batch_size": 128, "lr": 0.01, "patience": 50})


def test_checkpoint_roundtrip(params, tiny_data, tmp_path):
    d = tiny_data
    seed_everything(3)
    model = build_backbone("miggt", small_params(params), d.n_users, d.n_items, d.features)
    res = fit(model, d.train, EvalSet.build(d.valid, d.train, d.n_users), quick(params, 3), 3, progress=False)
    save_checkpoint(tmp_path / "ck", res.model, {"seed": 3})
    res.model.set_graph(d.train)
    u0, i0 = res.model.embeddings()
    loaded, meta = load_checkpoint(tmp_path / "ck", d.features)
    loaded.set_graph(d.train)
    u1, i1 = loaded.embeddings()
    assert meta["model"]["backbone"] == "miggt" and meta["model"]["params"]["hops"] == small_params(params)["hops"]
    assert torch.equal(u0, u1) and torch.equal(i0, i1)


def test_erase_rows_redraws_deleted_users_only(params, tiny_data):
    model = build(params, tiny_data)
    before = model.user_embedding.detach().clone()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    changed = model.erase_rows(np.array([2, 5]), np.array([1, 3]), torch.Generator().manual_seed(9))
    assert changed == ["user_embedding"]  # items own no parameter rows: the encoders read raw features
    after = model.user_embedding.detach()
    assert not torch.equal(after[2], before[2]) and not torch.equal(after[5], before[5])
    keep = [u for u in range(tiny_data.n_users) if u not in (2, 5)]
    assert torch.equal(after[keep], before[keep])
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items() if k != "user_embedding")
    again = build(params, tiny_data)
    again.erase_rows(np.array([2, 5]), np.array([1, 3]), torch.Generator().manual_seed(9))
    assert torch.equal(again.user_embedding[[2, 5]], after[[2, 5]])  # seeded by the generator
    assert model.erase_rows(np.zeros(0, np.int64), np.array([1]), torch.Generator()) == []


def test_a_user_without_interactions_gets_no_gradient(params, tiny_data):
    """What makes the exact erasure exact: a retrain never moves the row of a user who has no
    interactions, so a fresh draw from the initialisation is what it leaves."""
    d = tiny_data
    model = build(params, d)
    gone = 5
    model.set_graph(d.train[d.train[:, 0] != gone])
    model.train()
    users, pos, neg = batch(d, n=200)
    keep = users != gone
    loss, _ = model.loss(users[keep], pos[keep], neg[keep])
    loss.backward()
    grad = model.user_embedding.grad
    assert float(grad[gone].abs().sum()) == 0 and float(grad.abs().sum()) > 0


def test_a_fit_of_the_user_table_alone_takes_the_same_gradient_with_the_rest_frozen(params, tiny_data):
    """gradients_only_for (the row re-fits' speed-up) may only skip work: under MIG-GT's dropout
    and sampling, the user table's gradient is the same number with every other parameter
    frozen, and each parameter's requires_grad comes back afterwards."""
    from tru.unlearning.steps import gradients_only_for

    d = tiny_data
    grads = []
    for frozen in (False, True):
        model = build(params, d)
        model.train()
        torch.manual_seed(7)  # the dropout masks
        model.zero_grad(set_to_none=True)
        if frozen:
            with gradients_only_for(model, ["user_embedding"]):
                loss, _ = model.loss(*batch(d, n=64))
                loss.backward()
                others = [p for n, p in model.named_parameters() if n != "user_embedding"]
                assert others and not any(p.requires_grad for p in others)
            assert all(p.grad is None for p in others)  # nothing was spent on them
        else:
            loss, _ = model.loss(*batch(d, n=64))
            loss.backward()
        grads.append(model.user_embedding.grad.clone())
        assert all(p.requires_grad for p in model.parameters())
    assert float(grads[0].abs().sum()) > 0
    assert torch.equal(grads[0], grads[1])


def test_the_approximate_user_rows_loss_is_the_loss_in_eval_mode_and_noisy_in_training(params, tiny_data):
    """MIG-GT's user_rows_loss: none unless asked for the approximation (its training loss has
    no exact shortcut); in eval mode (no dropout, fixed memory samples) the same loss and the
    same gradient on the re-fitted rows as the whole forward pass, before and after those rows
    move, and none on other rows; in training mode the rows' dropout and the memory samples
    still change it from step to step."""
    d = tiny_data
    model = build(params, d)
    rows = np.array([0, 3, 7])
    assert model.user_rows_loss(rows) is None
    model.eval()
    local = model.user_rows_loss(rows, approximate=True)
    assert local is not None and not model.training
    pick = np.flatnonzero(np.isin(d.train[:, 0], rows))[:40]
    users, pos = torch.as_tensor(d.train[pick, 0]), torch.as_tensor(d.train[pick, 1])
    neg = torch.as_tensor((d.train[pick, 1] * 7 + 3) % d.n_items)
    assert_rows_loss_matches(model, "user_embedding", local, rows, users, pos, neg, d.n_users, atol=1e-5)
    model.train()
    a, b = (float(local(users, pos, neg)[0].detach()) for _ in range(2))
    assert a != b
