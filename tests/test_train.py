import numpy as np
import pytest
import torch

from tru.checkpoint import load_checkpoint, save_checkpoint
from tru.errors import DataError
from tru.models import build_backbone
from tru.train import EvalSet, NegativeSampler, Resume, evaluate, fit, seed_everything


def quick(params, epochs=15):
    return params.train.model_copy(update={"max_epochs": epochs, "batch_size": 128, "lr": 0.01, "patience": 50})


SMALL = {"mgcn": {"embedding_dim": 16, "knn_k": 5}, "miggt": {"embedding_dim": 16, "hidden_dim": 32}}


def mparams(params, backbone="mgcn"):
    return getattr(params.model, backbone).model_copy(update=SMALL[backbone]).model_dump()


def train_once(params, data, seed, tmp_path, name, backbone="mgcn"):
    seed_everything(seed)
    model = build_backbone(backbone, mparams(params, backbone), data.n_users, data.n_items, data.features)
    res = fit(
        model, data.train, EvalSet.build(data.valid, data.train, data.n_users), quick(params), seed, progress=False
    )
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


def test_a_killed_training_run_resumes_to_the_uninterrupted_result(params, tiny_data, tmp_path, capsys):
    valid = EvalSet.build(tiny_data.valid, tiny_data.train, tiny_data.n_users)
    recipe = quick(params, epochs=7).model_copy(update={"checkpoint_every": 2})

    def run(folder, kill_at_batch=None, seed=5):
        seed_everything(seed)
        model = build_backbone("mgcn", mparams(params), tiny_data.n_users, tiny_data.n_items, tiny_data.features)
        if kill_at_batch is not None:
            calls, loss = [0], model.loss

            def dying_loss(*a):
                calls[0] += 1
                if calls[0] == kill_at_batch:
                    raise KeyboardInterrupt
                return loss(*a)

            model.loss = dying_loss
        return fit(model, tiny_data.train, valid, recipe, seed, progress=False, resume=folder)

    plain = run(None)
    h_plain = save_checkpoint(tmp_path / "plain", plain.model, {})
    # snapshots leave the result as it is
    snapped = run(tmp_path / "a.resume")
    assert save_checkpoint(tmp_path / "snapped", snapped.model, {}) == h_plain
    assert snapped.resumed_from == 0

    batches_per_epoch = -(-len(tiny_data.train) // recipe.batch_size)
    folder = tmp_path / "b.resume"
    with pytest.raises(KeyboardInterrupt):  # killed in epoch 6: the last snapshot is epoch 4's
        run(folder, kill_at_batch=5 * batches_per_epoch + 2)
    assert (folder / Resume.META).is_file() and (folder / Resume.TENSORS).is_file()
    resumed = run(folder)
    assert resumed.resumed_from == 4
    assert save_checkpoint(tmp_path / "resumed", resumed.model, {}) == h_plain
    assert [h["epoch"] for h in resumed.history] == list(range(1, 8))
    assert resumed.best_epoch == plain.best_epoch and resumed.best_valid == plain.best_valid
    assert "resuming after epoch 4" in capsys.readouterr().out

    # the folder still holds epoch 6's snapshot (the caller clears it once the result is
    # saved); a snapshot of another run (here: another seed) is never used
    other = run(folder, seed=6)
    assert other.resumed_from == 0 and "another run" in capsys.readouterr().out


def test_training_into_a_log_file_says_how_far_it_is(params, tiny_data, capsys):
    # under pytest the output is not a terminal: no bar, a line every checkpoint_every epochs and at the end
    valid = EvalSet.build(tiny_data.valid, tiny_data.train, tiny_data.n_users)
    recipe = quick(params, epochs=5).model_copy(update={"checkpoint_every": 2})
    seed_everything(5)
    model = build_backbone("mgcn", mparams(params), tiny_data.n_users, tiny_data.n_items, tiny_data.features)
    res = fit(model, tiny_data.train, valid, recipe, 5, desc="base")
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("base: epoch")]
    assert [x.split(",")[0] for x in lines] == ["base: epoch 2/5", "base: epoch 4/5", "base: epoch 5/5"]
    last = res.history[-1]
    assert (
        f"valid R@20 {last['valid_recall@20']:.4f} (best {res.best_valid['recall@20']:.4f} at epoch {res.best_epoch})"
        in lines[-1]
    )
    seed_everything(5)
    model = build_backbone("mgcn", mparams(params), tiny_data.n_users, tiny_data.n_items, tiny_data.features)
    fit(model, tiny_data.train, valid, recipe, 5, progress=False)
    assert "epoch" not in capsys.readouterr().out


def test_training_recipe_leaves_out_the_snapshot_interval(params):
    a = params.train.model_copy(update={"checkpoint_every": 0})
    b = params.train.model_copy(update={"checkpoint_every": 25})
    assert a.recipe() == b.recipe() and "checkpoint_every" not in a.recipe()
    assert a.recipe() != params.train.model_copy(update={"lr": 0.5}).recipe()


def test_validating_every_few_epochs_returns_the_best_validated_epoch(params, tiny_data):
    """eval_every > 1 (UltraRE's shards count it in steps): an epoch without a validation is
    never taken for the best one, and the model returned is the best validated epoch's."""
    seed_everything(7)
    model = build_backbone("mgcn", mparams(params), tiny_data.n_users, tiny_data.n_items, tiny_data.features)
    recipe = quick(params, epochs=10).model_copy(update={"eval_every": 3})
    valid = EvalSet.build(tiny_data.valid, tiny_data.train, tiny_data.n_users)
    res = fit(model, tiny_data.train, valid, recipe, 7, progress=False)
    validated = {h["epoch"]: h["valid_recall@20"] for h in res.history if "valid_recall@20" in h}
    assert sorted(validated) == [3, 6, 9]
    assert res.best_epoch == max(validated, key=lambda e: (validated[e], -e))  # the first best one
    assert evaluate(res.model, valid, ks=(20,))["recall@20"] == pytest.approx(validated[res.best_epoch])
