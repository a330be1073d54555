"""The audits on tiny synthetic data: the membership attack, balanced sampling, the backdoor
canary, exposure, parameter shift and the gate (the pipeline test runs `tru audit` itself)."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_tiny_data
from test_unlearning import small, user_batch

from tru.audit import canary as canary_mod
from tru.audit.gate import evaluate_gate
from tru.audit.measures import exposure, module_norms, parameter_shift
from tru.audit.mia import balanced_sample, membership_audit, null_balanced_accuracy
from tru.data.dataset import InteractionData
from tru.models import build_backbone
from tru.stages.context import batch_metrics
from tru.train import EvalSet, fit, seed_everything
from tru.unlearning import run_method


def _model(params, data, epochs, lr=0.01):
    p = small(params)
    tp = p.train.model_copy(update={"max_epochs": epochs, "lr": lr, "patience": 10_000})
    seed_everything(p.seed)
    m = build_backbone("mgcn", p.model.mgcn.model_dump(), data.n_users, data.n_items, data.features)
    if epochs:
        m = fit(m, data.train, EvalSet.build(data.valid, data.train, data.n_users), tp, p.seed, progress=False).model
    m.set_graph(data.train)
    m.eval()
    return m


def random_data(seed=0, n_users=80, n_items=60, per_user=10) -> InteractionData:
    """Each user picks items uniformly at random: nothing to generalise from, so a model can
    only rank its training pairs above held-out ones by memorising them."""
    rng = np.random.default_rng(seed)
    per = np.stack(
        [np.stack([np.full(per_user, u), rng.choice(n_items, per_user, replace=False)], 1) for u in range(n_users)]
    )
    features = {"noise": rng.normal(size=(n_items, 6)).astype(np.float32)}
    return InteractionData(
        "random",
        n_users,
        n_items,
        per[:, :8].reshape(-1, 2),
        per[:, 8:9].reshape(-1, 2),
        per[:, 9:].reshape(-1, 2),
        features,
    )


@pytest.fixture(scope="module")
def memorised(params):
    data = random_data()
    fresh = _model(params, data, epochs=0)
    # a model that never saw these members: untrained, and its graph (which is memory too:
    # propagation alone pulls a user towards its items) built from other interactions
    fresh.set_graph(random_data(seed=99).train)
    return data, _model(params, data, epochs=100), fresh


def _members(data):
    return data.train, np.concatenate([data.valid, data.test])


def test_attack_finds_members_of_a_model_that_memorised_them(memorised):
    data, model, _ = memorised
    members, non = _members(data)
    # the attacker audits the trained model as "unlearned" against itself as the original
    out = membership_audit(
        {"original": model}, model, members, non, data.train[:0], data.n_users, None, seed=0, folds=5, bootstrap=50
    )
    best = out["models"]["original"][out["models"]["original"]["best"]]
    assert best["balanced_accuracy"] > 0.7, best
    assert best["auc"] > 0.75
    lo, hi = best["balanced_accuracy_ci"]
    assert lo <= best["balanced_accuracy"] <= hi and lo > 0.6


def test_attack_is_near_chance_on_a_fresh_model(memorised):
    data, _, fresh = memorised
    members, non = _members(data)
    out = membership_audit(
        {"original": fresh}, fresh, members, non, data.train[:0], data.n_users, None, seed=0, folds=5, bootstrap=50
    )
    for name in ("lr", "gbm"):
        r = out["models"]["original"][name]
        assert abs(r["balanced_accuracy"] - 0.5) < 0.12, r
        assert r["balanced_accuracy_ci"][0] < 0.5 + 0.05  # the interval reaches chance


def test_balanced_sample_balances_each_user_and_is_seeded():
    # user 0: 30 members, 4 non-members; user 1: 2 members, 20 non-members; user 2: members only
    members = np.concatenate(
        [
            np.stack([np.zeros(30, np.int64), np.arange(30)], 1),
            np.stack([np.ones(2, np.int64), np.arange(2)], 1),
            np.stack([np.full(5, 2), np.arange(5)], 1),
        ]
    )
    non = np.concatenate(
        [
            np.stack([np.zeros(4, np.int64), 100 + np.arange(4)], 1),
            np.stack([np.ones(20, np.int64), 100 + np.arange(20)], 1),
        ]
    )
    pairs, y = balanced_sample(members, non, max_per_class=1000, seed=3)
    for label in (0, 1):
        users, counts = np.unique(pairs[y == label, 0], return_counts=True)
        assert users.tolist() == [0, 1] and counts.tolist() == [4, 2]  # min per user; user 2 left out
    assert {tuple(p) for p in pairs[y == 1]} <= {tuple(p) for p in members}
    assert {tuple(p) for p in pairs[y == 0]} <= {tuple(p) for p in non}
    assert len({tuple(p) for p in pairs}) == len(pairs)  # without replacement
    again, _ = balanced_sample(members, non, max_per_class=1000, seed=3)
    assert np.array_equal(pairs, again)
    capped, yc = balanced_sample(members, non, max_per_class=3, seed=3)
    assert (yc == 1).sum() == (yc == 0).sum() == 3
    # the cap keeps matched pairs: each user has as many members as non-members
    assert sorted(capped[yc == 1, 0].tolist()) == sorted(capped[yc == 0, 0].tolist())


def test_canary_injects_fake_users_with_triggers_and_a_cold_target():
    data = make_tiny_data(seed=1, n_users=60, n_items=40)
    train = pd.DataFrame({"user": data.train[:, 0], "item": data.train[:, 1], "timestamp": np.arange(len(data.train))})
    cfg = SimpleNamespace(
        users=0.1, profile_length=8, triggers=2, target_popularity=(0, 100), trigger_popularity=(5, 20)
    )
    out, meta = canary_mod.inject(train, data.n_users, data.n_items, cfg, seed=0)
    fake = np.asarray(meta["fake_users"])
    assert list(fake) == list(range(60, 66)) and len(meta["raw_ids"]) == 6
    rows = out[out["user"].isin(fake)]
    assert len(rows) == meta["rows"] == 6 * 8
    for _, g in rows.groupby("user"):
        assert set(meta["trigger_items"]) | {meta["target_item"]} <= set(g["item"])
        assert g["item"].is_unique
    pop = np.bincount(data.train[:, 1], minlength=data.n_items)
    assert pop[meta["target_item"]] == meta["target_popularity_before"]
    assert out.iloc[: len(train)].equals(train)  # real rows untouched
    again, meta2 = canary_mod.inject(train, data.n_users, data.n_items, cfg, seed=0)
    assert meta2 == meta and again.equals(out)


def test_backdoor_metrics_see_the_target_pushed_by_fake_users(params):
    data = make_tiny_data(seed=2, n_users=80, n_items=80)
    train = pd.DataFrame({"user": data.train[:, 0], "item": data.train[:, 1], "timestamp": np.arange(len(data.train))})
    cfg = SimpleNamespace(
        users=0.2, profile_length=6, triggers=2, target_popularity=(0, 6), trigger_popularity=(1, 1000)
    )
    poisoned, meta = canary_mod.inject(train, data.n_users, data.n_items, cfg, seed=0)
    from dataclasses import replace

    n_users = data.n_users + len(meta["fake_users"])
    bad = replace(data, n_users=n_users, train=poisoned[["user", "item"]].to_numpy(np.int64))
    clean_model, bad_model = _model(params, data, 60), _model(params, bad, 60)
    normal = np.arange(data.n_users)
    clean = canary_mod.backdoor_metrics(clean_model, meta, normal, data.train, data.n_users, k=5)
    attacked = canary_mod.backdoor_metrics(bad_model, meta, normal, bad.train, n_users, k=5)
    assert attacked["median_rank"] < clean["median_rank"]
    assert attacked["asr"] > clean["asr"]
    assert 0.0 <= attacked["asr_trigger_users"] <= 1.0 and attacked["users"] == 80
    # the reference needs no retrain: the peers are chosen by real (normal users') popularity,
    # the same for both models, and the lift is ASR above their top-k share
    assert attacked["peer_items"] == clean["peer_items"] and meta["target_item"] not in attacked["peer_items"]
    assert attacked["lift"] == pytest.approx(attacked["asr"] - attacked["peer_asr"], abs=2e-6)
    assert attacked["lift"] > clean["lift"]


def test_backdoor_reference_is_the_top_k_share_of_the_targets_popularity_peers():
    # 4 normal users, 8 items; scores fixed so the top-2 lists are known by hand
    train = np.array([[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [0, 2], [1, 3], [2, 4], [3, 5], [4, 6], [4, 7]])
    canary = {"target_item": 1, "trigger_items": [7]}  # item 1: 2 interactions from normal users
    normal = np.arange(4)
    peers = canary_mod.popularity_peers(canary, normal, train, 8, peers=2)
    # normal users' popularity: [3, 2, 1, 1, 1, 1, 0, 0]; nearest to 2: item 0 (3), then item 2 (1)
    assert peers.tolist() == [0, 2]
    scores = torch.tensor([[9.0, 8, 7, 6, 5, 4, 3, 2]]).repeat(5, 1)

    class Fixed:
        n_items = 8

        def score_fn(self):
            return lambda users: scores[users]

    bd = canary_mod.backdoor_metrics(Fixed(), canary, normal, train, 5, k=2, peers=2)
    # own items masked; top-2: u0 {3,4}, u1 {2,4}, u2 {1,2}, u3 {0,1}
    assert bd["asr"] == pytest.approx(0.5)  # target 1 in the lists of u2, u3
    assert bd["peer_asr"] == pytest.approx((1 + 2) / (2 * 4))  # item 0: u3; item 2: u1, u2
    assert bd["lift"] == pytest.approx(0.5 - 0.375)


def test_exposure_counts_target_items_in_top_k():
    class Fixed:  # scores = item index: the top-2 are always the two highest ids
        n_items = 6

        def score_fn(self):
            return lambda users: torch.arange(6, dtype=torch.float32).repeat(len(users), 1)

    train = np.array([[0, 5], [1, 0]])
    out = exposure(Fixed(), np.array([5]), np.array([0, 1]), train, 2, None, k=2)
    # user 0 has item 5 in training (masked): top-2 = {4, 3}; user 1: top-2 = {5, 4}
    assert out == {"share_of_users": 0.5, "mean_per_user": 0.5, "users": 2}
    none = exposure(Fixed(), np.array([5]), np.array([0, 1]), train, 2, np.array([0, 1, 2, 3, 4]), k=2)
    assert none["share_of_users"] == 0.0  # an item outside the candidates is never shown


def test_parameter_shift_is_relative_and_flags_overshoot(params, memorised):
    data, model, fresh = memorised
    assert all(v == 0.0 for v in module_norms(model, model).values())
    import copy

    moved = copy.deepcopy(model)
    name = next(iter(moved.selection_modules()))
    with torch.no_grad():
        for n in moved.selection_modules()[name]:
            dict(moved.named_parameters())[n].mul_(2.0)  # relative change exactly 1
    slight = copy.deepcopy(model)
    with torch.no_grad():
        for n in slight.selection_modules()[name]:
            dict(slight.named_parameters())[n].mul_(1.1)
    shift = parameter_shift(moved, model, slight, flag_ratio=3.0)
    row = next(r for r in shift["modules"] if r["module"] == name)
    assert row["unlearned"] == pytest.approx(1.0) and row["retrain"] == pytest.approx(0.1)
    assert row["flagged"] and shift["flagged"] == [name]


def test_gate_fails_a_broken_erasure_and_passes_a_good_one(params):

    p = small(params)
    # 120 items, so a top-20 is a sixth of the catalogue (with 40 a random ranking recalls half)
    prior = make_tiny_data(seed=3, n_users=80, n_items=120)
    base = _model(params, prior, 40)
    ctx = user_batch(prior, base, np.arange(0, 80, 8))
    gate = params.audit.gate
    broken = run_method(
        "tru",
        ctx,
        p.model_copy(
            update={
                "unlearn": p.unlearn.model_copy(
                    update={"max_epochs": 0, "exact_erasure": False, "rebuild_graphs": False}
                )
            }
        ),
    )
    good = run_method("tru", ctx, p)
    m0 = batch_metrics(ctx.base, ctx)
    verdicts = {}
    for name, res in (("broken", broken), ("good", good)):
        res.model.set_graph(ctx.data.train, ctx.data.active_items)
        metrics = {"original": m0, "unlearned": batch_metrics(res.model, ctx)}
        mia = membership_audit(
            {"unlearned": res.model},
            ctx.base,
            *ctx.membership_pairs(),
            ctx.data.train,
            ctx.data.n_users,
            None,
            seed=0,
            bootstrap=0,
        )
        ba = mia["models"]["unlearned"][mia["models"]["unlearned"]["best"]]["balanced_accuracy"]
        verdicts[name] = evaluate_gate(metrics, ba, None, gate)
    assert verdicts["broken"]["verdict"] == "fail"
    assert "forget_recall_ratio" in verdicts["broken"]["failed"]
    assert verdicts["good"]["verdict"] == "pass", verdicts["good"]["checks"]
    backdoor = next(c for c in verdicts["good"]["checks"] if c["name"] == "backdoor_lift")
    assert backdoor["passed"] is None  # no canary in this batch: not applicable, not a pass


def test_the_membership_check_is_judged_only_on_enough_pairs(params):
    """A batch of two users gives a handful of pairs, on which a cross-validated attack scores
    anywhere from 0 to 1 by chance: the value is kept, the gate does not act on it."""
    gate = params.audit.gate
    metrics = {
        m: {"retain": {"recall@20": 0.2}, "forget": {"recall@20": f, "n_rows": 10}}
        for m, f in (("original", 0.5), ("unlearned", 0.1))
    }
    few = evaluate_gate(metrics, 1.0, None, gate, mia_pairs=gate.min_mia_pairs - 1)
    check = next(c for c in few["checks"] if c["name"] == "mia_balanced_accuracy")
    assert few["verdict"] == "pass" and check["passed"] is None and check["value"] == 1.0
    assert f"{gate.min_mia_pairs - 1} forgotten" in check["note"] and "min_mia_pairs" in check["note"]
    enough = evaluate_gate(metrics, 1.0, None, gate, mia_pairs=gate.min_mia_pairs)
    assert enough["verdict"] == "fail" and enough["failed"] == ["mia_balanced_accuracy"]
    assert evaluate_gate(metrics, 0.55, None, gate, mia_pairs=gate.min_mia_pairs)["verdict"] == "pass"


def test_chance_alone_scores_wider_on_fewer_pairs():
    """The calibration behind min_mia_pairs: without any membership signal the best attack's
    balanced accuracy spreads far from 0.5 on a few pairs and tightens as pairs grow."""
    few, many = null_balanced_accuracy(8, 20, seed=0), null_balanced_accuracy(200, 20, seed=0)
    assert np.array_equal(few, null_balanced_accuracy(8, 20, seed=0))  # seeded
    assert np.abs(few - 0.5).mean() > 2 * np.abs(many - 0.5).mean()
    assert few.max() > 0.6 > many.max()
