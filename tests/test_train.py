import numpy as np
import pytest
import torch

from tru.checkpoint import load_checkpoint, save_checkpoint
from tru.errors import DataError
from tru.models import build_backbone
from tru.train import EvalSet, NegativeSampler, evaluate, fit, seed_everything


def quick(params, epochs=15):
    return params.train.model_copy(update={"max_epochs": epochs, "batch_size": 128, "lr": 0.01, "patience": 50})


SMALL = {"mgcn": {"embedding_dim": 16, "knn_k": 5}, "miggt": {"embedding_dim": 16, "hidden_dim": 32}}


def mparams(params, backbone="mgcn"):
    return getattr(params.model, backbone).model_copy(update=SMALL[backbone]).model_dump()


def train_once(params, data, seed, tmp_path, name, backbone="mgcn"):
    seed_everything(seed)
    model = build_backbone(backbone, mparams(params, backbone), data.n_users, data.n_items, data.features)
    res = fit(model, data.train, EvalSet.build(data.valid, data.train, data.n_users), quick(params), seed, progress=False)
    digest = save_checkpoint(tmp_path / name, res.model, {"seed": seed})
    return res, digest


@pytest.mark.parametrize("backbone", ["mgcn", "miggt"])
def test_training_is_deterministic_and_learns(params, tiny_data, tmp_path, backbone):
    r1, h1 = train_once(params, tiny_data, 7, tmp_path, "a", backbone)
    r2, h2 = train_once(params, tiny_data, 7, tmp_path, "b", backbone)
    assert h1 == h2, "same seed and data must give a byte-identical checkpoint"
    assert (tmp_path / "a" / "checkpoint.json").read_bytes() == (tmp_path / "b" / "checkpoint.json").read_bytes()
    _, h3 = train_once(params, tiny_data, 8, tmp_path, "c", backbone)
    assert h3 != h1
    # the clustered tiny data is learnable: far above random (20/40 items -> ~0.5 for 1 positive is random)
    test = EvalSet.build(tiny_data.test, tiny_data.train, tiny_data.n_users)
    m = evaluate(r1.model, test, ks=(5,))
    random_r5 = 5 / (tiny_data.n_items - 8)
    assert m["recall@5"] > 2 * random_r5
    assert r1.best_epoch >= 1 and r1.history[0]["loss"] > r1.history[-1]["loss"]


def test_checkpoint_roundtrip_and_tamper_detection(params, tiny_data, tmp_path):
    res, _ = train_once(params, tiny_data, 3, tmp_path, "ck")
    res.model.set_graph(tiny_data.train)
    u0, i0 = res.model.embeddings()
    model, meta = load_checkpoint(tmp_path / "ck", tiny_data.features)
    model.set_graph(tiny_data.train)
    u1, i1 = model.embeddings()
    assert torch.equal(u0, u1) and torch.equal(i0, i1)
    assert meta["seed"] == 3 and meta["model"]["backbone"] == "mgcn"
    weights = tmp_path / "ck" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="does not match"):
        load_checkpoint(tmp_path / "ck", tiny_data.features)


def test_negatives_avoid_training_items(tiny_data):
    sampler = NegativeSampler(tiny_data.train, tiny_data.n_items)
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(tiny_data.n_users), 50)
    neg = sampler.sample(users, rng)
    keys = set(map(tuple, tiny_data.train.tolist()))
    assert not any((int(u), int(i)) in keys for u, i in zip(users, neg))
    cand = np.arange(0, tiny_data.n_items, 2)
    neg2 = NegativeSampler(tiny_data.train, tiny_data.n_items, cand).sample(users, rng)
    assert np.isin(neg2, cand).all()


def test_zero_epochs_returns_model_unchanged(params, tiny_data):
    seed_everything(0)
    model = build_backbone("mgcn", mparams(params), tiny_data.n_users, tiny_data.n_items, tiny_data.features)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = fit(model, tiny_data.train, None, quick(params, epochs=0), 0, progress=False)
    assert all(torch.equal(before[k], v) for k, v in res.model.state_dict().items())


def test_seeding_switches_torch_to_deterministic_algorithms():
    torch._C._set_deterministic_algorithms(False, warn_only=False)
    assert not torch.are_deterministic_algorithms_enabled()
    seed_everything(3)
    assert torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
