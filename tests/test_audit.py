"""The audits on tiny synthetic data: the membership attack, balanced sampling, the backdoor
canary, exposure, parameter shift, the calibrated membership test against shadow pairs and the
gate (the pipeline test runs `tru audit` itself)."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_tiny_data
from test_unlearning import small, user_batch

from tru.audit import canary as canary_mod
from tru.audit.gate import evaluate_gate, promoted, retain_drop_interval
from tru.audit.measures import exposure, module_norms, parameter_shift
from tru.audit.mia import balanced_sample, membership_audit
from tru.audit.run import audit_batch
from tru.audit.shadow import membership_test, null_distribution, stratified_auc
from tru.data.dataset import InteractionData
from tru.data.split import shadow_rows
from tru.models import build_backbone
from tru.stages.context import batch_metrics, with_retain_drop, without_rows
from tru.train import EvalSet, fit, seed_everything
from tru.unlearning import run_method
from tru.unlearning.steps import probe_metrics


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


# --- the gate on a real erasure -------------------------------------------------------------------


@pytest.fixture(scope="module")
def erasure(params):
    """A user-level batch on tiny data whose shadow pairs are drawn as `tru split` draws them (a
    random quarter of each user's training rows, tru.data.split.shadow_rows: exchangeable with
    the forgotten rows under an exact retrain), 20 of 80 users deleted; a broken erasure (TRU
    with every step off: theta_0 itself, on the retain graph) and a good one (TRU as
    configured). Returns (params, ctx, {name: model})."""
    p = small(params)
    p = p.model_copy(
        update={"audit": p.audit.model_copy(update={"mia": p.audit.mia.model_copy(update={"bootstrap": 0})})}
    )
    # 120 items, so a top-20 is a sixth of the catalogue (with 40 a random ranking recalls half)
    tiny = make_tiny_data(seed=3, n_users=80, n_items=120)
    held = shadow_rows(pd.DataFrame({"user": tiny.train[:, 0]}), 0.25, seed=0)
    prior = replace(tiny, train=tiny.train[~held], shadow=tiny.train[held])
    base = _model(params, prior, 40)
    ctx = user_batch(prior, base, np.arange(0, 80, 4))
    off = p.unlearn.model_copy(
        update={
            "max_epochs": 0,
            "exact_erasure": False,
            "rebuild_graphs": False,
            "tru": p.unlearn.tru.model_copy(update={"refit_share": 0.0}),
        }
    )
    models = {"broken": run_method("tru", ctx, p.model_copy(update={"unlearn": off})).model}
    models["good"] = run_method("tru", ctx, p).model
    for m in models.values():
        m.set_graph(ctx.data.train, ctx.data.active_items)  # as tru.stages.context.batch_models does
        m.eval()
    return p, ctx, models


def _audit(p, ctx, unlearned) -> dict:
    """As the evaluate_batch and audit stages judge it: the retain drop with its paired bounds."""
    models = {"original": ctx.base, "unlearned": unlearned}
    original = batch_metrics(ctx.base, ctx, keep_rows=True)
    measured = {
        "original": without_rows(original),
        "unlearned": with_retain_drop(original, batch_metrics(unlearned, ctx, keep_rows=True), p.audit.gate),
    }
    return audit_batch(ctx, models, measured, p, None)


def test_gate_fails_a_broken_erasure_and_passes_a_good_one(erasure):
    p, ctx, models = erasure
    broken, good = _audit(p, ctx, models["broken"]), _audit(p, ctx, models["good"])
    check = {name: {c["name"]: c for c in out["checks"]} for name, out in (("broken", broken), ("good", good))}
    # the test has power here: theta_0, which trained on every forgotten pair, fails it
    membership = check["broken"]["membership_vs_shadow"]
    assert membership["power"] and membership["original"] > membership["threshold"]
    assert broken["verdict"] == "fail" and "membership_vs_shadow" in broken["failed"]
    assert membership["value"] > membership["threshold"] and membership["passed"] is False
    # the good erasure PASSES, not merely INCONCLUSIVE: the membership test has power on this
    # batch, and TRU (the deleted users' rows re-drawn, the graph rebuilt, reverse epochs until
    # this same test holds) brings the forgotten pairs under the threshold that fails the broken
    # one. It rests on that test alone: no canary, and the item-side check, judged on the items
    # that lost at least residue_min_removed interactions, passes without power (the untouched
    # original has no item above its peers either)
    assert good["verdict"] == "pass", good["checks"]
    assert good["basis"] == "passed with power: membership_vs_shadow" and promoted(good)
    kept = check["good"]["membership_vs_shadow"]
    assert kept["threshold"] == membership["threshold"] and kept["value"] < kept["threshold"]
    assert check["good"]["retain_recall_drop"]["passed"] is True
    residue = check["good"]["item_residue"]
    assert residue["judged"] and residue["passed"] and residue["power"] is False
    # reported, never judged; no canary in this batch: not applicable, not a pass
    ratio = check["good"]["forget_recall_ratio"]
    assert ratio["judged"] is False and ratio["passed"] is None and ratio["value"] is not None
    assert check["good"]["backdoor_lift"]["passed"] is None and check["good"]["backdoor_lift"]["judged"] is False


def _random_pairs(users, n_items, n, seed):
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(users, n), rng.integers(0, n_items, n)], 1).astype(np.int64)


def test_the_gate_and_the_stop_rule_read_no_valid_or_test_row(erasure):
    """Valid and test rows are what utility is reported on (and valid rows what training stops
    on): the gate's verdict and the stop rule's probe must not move when they do."""
    p, ctx, models = erasure
    kept = np.unique(ctx.data.train[:, 0])
    data = replace(
        ctx.data,
        valid=_random_pairs(kept, ctx.data.n_items, len(ctx.data.valid), 1),
        test=_random_pairs(kept, ctx.data.n_items, len(ctx.data.test), 2),
    )
    other = replace(ctx, data=data, heldout=_random_pairs(ctx.new_users, ctx.data.n_items, len(ctx.heldout), 3))
    for name in ("broken", "good"):
        before, after = _audit(p, ctx, models[name]), _audit(p, other, models[name])
        assert after["verdict"] == before["verdict"]
        for a, b in zip(after["checks"], before["checks"], strict=True):
            assert {k: a.get(k) for k in ("name", "value", "judged", "passed", "power", "threshold")} == {
                k: b.get(k) for k in ("name", "value", "judged", "passed", "power", "threshold")
            }
        # every audit of the batch, not only the gate's checks (the reported attack included)
        assert after == before
        probe = probe_metrics(models[name], ctx, p.audit.gate)
        assert probe_metrics(models[name], other, p.audit.gate) == probe
        assert probe["membership_auc"] is not None
    # the perturbation is real: the utility the batch reports on test rows did change
    test_recall = [batch_metrics(models["good"], c)["retain"]["recall@20"] for c in (ctx, other)]
    assert test_recall[0] != test_recall[1]


# --- the gate's rules, on hand-made results -------------------------------------------------------


def gate(params, **changes):
    return params.audit.gate.model_copy(update=changes)


def metrics(retain_after=0.2, forget_after=0.1) -> dict:
    return {
        "original": {"retain_shadow": {"recall@20": 0.2}, "forget": {"recall@20": 0.5, "n_rows": 40}},
        "unlearned": {
            "retain_shadow": {"recall@20": retain_after},
            "forget": {"recall@20": forget_after, "n_rows": 40},
        },
    }


def membership(auc, power, threshold=0.62):
    return {"members": 120, "auc": auc, "threshold": threshold, "power": power, "original_auc": 0.8 if power else 0.55}


def checks_of(result) -> dict:
    return {c["name"]: c for c in result["checks"]}


def test_a_check_without_power_cannot_make_a_pass(params):
    """The original model passes it too: passing proves nothing, so the verdict is
    INCONCLUSIVE, and the policy decides whether the model is promoted."""
    out = evaluate_gate(metrics(), membership(0.5, power=False), None, None, gate(params, inconclusive="pass"))
    c = checks_of(out)["membership_vs_shadow"]
    assert c["judged"] and c["passed"] and c["power"] is False and "no power" in c["note"]
    assert out["verdict"] == "inconclusive" and out["failed"] == []
    assert "audit.gate.inconclusive: pass" in out["basis"] and promoted(out)
    held = evaluate_gate(metrics(), membership(0.5, power=False), None, None, gate(params, inconclusive="review"))
    assert held["verdict"] == "inconclusive" and held["policy"] == "review" and not promoted(held)
    # with power the same value is a PASS, promoted under either policy
    for policy in ("pass", "review"):
        out = evaluate_gate(metrics(), membership(0.5, power=True), None, None, gate(params, inconclusive=policy))
        assert out["verdict"] == "pass" and promoted(out)
        assert out["basis"] == "passed with power: membership_vs_shadow"


def test_a_failed_judged_check_fails_whatever_the_rest(params):
    for policy in ("pass", "review"):
        g = gate(params, inconclusive=policy)
        leaky = evaluate_gate(metrics(), membership(0.7, power=True), None, None, g)
        assert leaky["verdict"] == "fail" and leaky["failed"] == ["membership_vs_shadow"] and not promoted(leaky)
        # a failure needs no power: only a pass does
        assert evaluate_gate(metrics(), membership(0.7, power=False), None, None, g)["verdict"] == "fail"
        # utility: the retained users' shadow pairs lost a quarter of their Recall@20
        spoiled = evaluate_gate(metrics(retain_after=0.15), membership(0.5, power=True), None, None, g)
        assert spoiled["verdict"] == "fail" and spoiled["failed"] == ["retain_recall_drop"] and not promoted(spoiled)
        assert checks_of(spoiled)["retain_recall_drop"]["value"] == pytest.approx(0.25)


def test_the_retain_check_judges_the_drop_beyond_its_sampling_noise(params):
    """Two models of equal quality differ on a few shadow pairs a user by chance: the check fails
    a drop whose one-sided lower bound is above the limit, not one the sample cannot tell from
    noise; metrics without the bounds (older reports) are judged on the drop itself."""
    g = gate(params)  # max_retain_drop 0.05, one-sided 95%
    rng = np.random.default_rng(3)
    users = 900
    original = (rng.random(users) < 0.2).astype(float)  # each user's Recall@20 on one shadow pair: 0 or 1

    def judged(unlearned):
        ci = retain_drop_interval(original, unlearned, g.retain_confidence, g.retain_resamples)
        m = metrics(retain_after=float(unlearned.mean()) * 0.2 / original.mean())
        m["unlearned"]["retain_shadow_drop"] = ci
        return ci, checks_of(evaluate_gate(m, membership(0.5, power=True), None, None, g))["retain_recall_drop"]

    # an independent model of the same quality (a retrain): hits drawn anew, 7% fewer by chance
    noisy = original.copy()
    flip = rng.choice(np.flatnonzero(original == 1), size=round(0.07 * original.sum()), replace=False)
    noisy[flip] = 0
    ci, check = judged(noisy)
    assert ci["drop"] == pytest.approx(0.07, abs=0.005) and ci["low"] < 0.05 < ci["drop"] < ci["high"]
    assert (
        check["passed"] is True and check["value"] > check["threshold"] and check["interval"] == [ci["low"], ci["high"]]
    )
    assert "not shown to exceed the limit" in check["note"] and "900 retained users" in check["note"]
    # a quarter of the hits lost: beyond the limit at this confidence
    spoiled = original.copy()
    spoiled[np.flatnonzero(original == 1)[::4]] = 0
    ci, check = judged(spoiled)
    assert ci["low"] > 0.05 and check["passed"] is False and "beyond the limit" in check["note"]
    # the same model: no drop, and the bounds are those of a paired difference of nothing
    ci, check = judged(original.copy())
    assert ci["drop"] == ci["low"] == ci["high"] == 0 and check["passed"] and "within the limit" in check["note"]
    # deterministic: the same rows give the same bounds
    assert retain_drop_interval(original, noisy, 0.95, 1000) == retain_drop_interval(original, noisy, 0.95, 1000)
    with pytest.raises(ValueError, match="differ in length"):
        retain_drop_interval(original, noisy[:-1], 0.95, 1000)


def test_item_residue_and_backdoor_judge_with_their_own_power(params):
    g = gate(params)

    def residue(flagged_after, flagged_before, threshold=1.5):
        return {
            name: {"checked": 4, "flagged": f, "threshold": threshold}
            for name, f in (("original", flagged_before), ("unlearned", flagged_after))
        }

    clean = evaluate_gate(metrics(), None, residue(0, 2), None, g)
    c = checks_of(clean)
    assert c["membership_vs_shadow"]["judged"] is False and c["membership_vs_shadow"]["note"]
    assert c["item_residue"]["power"] and clean["verdict"] == "pass"
    assert clean["basis"] == "passed with power: item_residue"
    assert evaluate_gate(metrics(), None, residue(1, 2), None, g)["failed"] == ["item_residue"]
    assert evaluate_gate(metrics(), None, residue(0, 0), None, g)["verdict"] == "inconclusive"
    no_peers = checks_of(evaluate_gate(metrics(), None, residue(0, 2, threshold=None), None, g))["item_residue"]
    assert no_peers["judged"] is False and "peers" in no_peers["note"]
    # the canary: its lift after the erasure, and the original's (power: it exceeds the limit)
    lift = g.max_backdoor_lift
    assert evaluate_gate(metrics(), None, None, (lift / 2, lift * 10), g)["verdict"] == "pass"
    assert evaluate_gate(metrics(), None, None, (lift * 2, lift * 10), g)["failed"] == ["backdoor_lift"]
    assert evaluate_gate(metrics(), None, None, (lift / 2, lift / 2), g)["verdict"] == "inconclusive"


def test_forget_recall_ratio_is_reported_and_never_judged(params):
    """An exact retrain keeps a share of forget Recall@20 (a user's remaining data predicts some
    removed items): the ratio is shown, and neither fails nor passes a batch."""
    g = gate(params)
    for forget_after in (0.0, 0.5, 1.0):
        out = evaluate_gate(metrics(forget_after=forget_after), membership(0.5, power=True), None, None, g)
        c = checks_of(out)["forget_recall_ratio"]
        assert c["value"] == pytest.approx(forget_after / 0.5) and c["threshold"] is None
        assert c["judged"] is False and c["passed"] is None and "not judged" in c["note"]
        assert out["verdict"] == "pass" and out["failed"] == []
    alone = evaluate_gate(metrics(forget_after=0.0), None, None, None, g)
    assert alone["verdict"] == "inconclusive"  # forgetting everything is no erasure check with power


# --- the membership test against shadow pairs (tru.audit.shadow) ---------------------------------


def test_stratified_auc_is_the_auc_within_each_stratum():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    a, b = np.round(rng.normal(0.3, 1, 40), 1), np.round(rng.normal(0, 1, 25), 1)  # rounded: ties
    one = stratified_auc(a, b, np.zeros(40, int), np.zeros(25, int))
    assert one == pytest.approx(roc_auc_score(np.r_[np.ones(40), np.zeros(25)], np.r_[a, b]))
    # several strata: the pairs compared are those of the same stratum only (weights n_m * n_n);
    # a stratum whose every value is shifted changes nothing
    c, d = rng.normal(0, 1, 6), rng.normal(0, 1, 9)
    sm, sn = np.r_[np.zeros(40, int), np.ones(6, int)], np.r_[np.zeros(25, int), np.ones(9, int)]
    two = stratified_auc(np.r_[a, c + 100], np.r_[b, d + 100], sm, sn)
    other = roc_auc_score(np.r_[np.ones(6), np.zeros(9)], np.r_[c, d])
    assert two == pytest.approx((one * 40 * 25 + other * 6 * 9) / (40 * 25 + 6 * 9))
    # no stratum with both sides: nothing to compare
    assert stratified_auc(a, b, np.zeros(40, int), np.ones(25, int)) is None
    assert stratified_auc(a[:0], b, np.zeros(0, int), np.zeros(25, int)) is None


def _draw(rng, sm, sn):
    """Values of members and non-members drawn alike (an exact retrain's view): each stratum
    (a user) has its own level."""
    level = rng.normal(0, 3, max(sm.max(), sn.max()) + 1)
    return level[sm] + rng.normal(size=len(sm)), level[sn] + rng.normal(size=len(sn))


def _exchangeable(rng, strata=30):
    """Members and non-members of `strata` users, each with its own numbers of each."""
    sm = np.repeat(np.arange(strata), rng.integers(1, 10, strata))
    sn = np.repeat(np.arange(strata), rng.integers(1, 4, strata))
    return *_draw(rng, sm, sn), sm, sn


def test_the_null_is_centred_and_its_quantile_has_the_test_size():
    """Exchangeable draws exceed the null's 99% quantile about 1% of the time: the false alarms
    of the membership test on exact erasures."""
    rng = np.random.default_rng(7)
    members, non, sm, sn = _exchangeable(rng)
    null = null_distribution(members, non, sm, sn, 2000, seed=1)
    assert abs(null.mean() - 0.5) < 0.01
    assert np.array_equal(null, null_distribution(members, non, sm, sn, 2000, seed=1))  # seeded
    # without ties the null depends on the strata only, so one null serves every draw with
    # these strata: each draw is a fresh exact erasure
    q99 = np.quantile(null, 0.99)
    draws = 300
    exceed = sum(stratified_auc(*_draw(rng, sm, sn), sm, sn) > q99 for _ in range(draws))
    assert 0 <= exceed / draws <= 0.04


def test_a_strong_signal_exceeds_the_threshold_and_gives_the_test_power():
    rng = np.random.default_rng(3)
    members, non, sm, sn = _exchangeable(rng)
    shifted = members + 1.5  # forgotten pairs still rank above never-trained ones
    out = membership_test(shifted, non, sm, sn, 0.99, 0.02, 500, seed=0, reference=(shifted, non))
    assert out["auc"] > out["threshold"] >= 0.52 and out["exceeds"] and out["power"]
    assert out["members"] == len(sm) and out["non_members"] == len(sn) and out["strata"] == 30
    # an erasure that removed it, judged against the same original: no exceedance, with power
    erased = membership_test(members, non, sm, sn, 0.99, 0.02, 500, seed=0, reference=(shifted, non))
    assert not erased["exceeds"] and erased["power"] and erased["auc"] < erased["threshold"]
    # against an original that showed nothing, the test has no power
    assert membership_test(members, non, sm, sn, 0.99, 0.02, 500, seed=0, reference=(members, non))["power"] is False
    # the minimum effect is a floor under the threshold
    floor = membership_test(members, non, sm, sn, 0.99, 0.45, 500, seed=0)
    assert floor["threshold"] == 0.95 and floor["null_quantile"] < 0.95


def test_the_stop_rule_judges_the_batchs_backdoor_targets(erasure):
    """A batch's backdoor targets (the canary's, when it deletes the canary) join the stop rule's
    item-side check whatever share they lost, as they join the gate's."""
    p, ctx, models = erasure
    g = p.audit.gate
    losing = ctx.items_losing(g.residue_min_removed_share, at_least=g.residue_min_removed)
    assert len(losing)
    # an item that lost a share but fewer than residue_min_removed interactions is not checked:
    # a push takes several accounts, and a cold item that lost one of two is flagged by a retrain too
    some = ctx.items_losing(g.residue_min_removed_share)
    removed = np.bincount(ctx.forget[:, 1], minlength=ctx.data.n_items)
    assert set(losing) == {i for i in some if removed[i] >= g.residue_min_removed} and len(some) > len(losing)
    target = int(np.setdiff1d(ctx.data.candidates, losing)[0])
    plain = probe_metrics(models["good"], ctx, p.audit.gate)
    named = probe_metrics(models["good"], replace(ctx, targets=np.array([target])), p.audit.gate)
    assert named["residue_checked"] == plain["residue_checked"] + 1 == len(losing) + 1
    # a target already among the items that lost a share is checked once
    again = probe_metrics(models["good"], replace(ctx, targets=losing[:1]), p.audit.gate)
    assert again["residue_checked"] == len(losing)
