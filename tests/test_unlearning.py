"""TRU's mechanisms in isolation and the methods end to end, on tiny synthetic data."""

import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import make_tiny_data

from tru.checkpoint import save_checkpoint
from tru.models import build_backbone
from tru.train import EvalSet, NegativeSampler, fit, seed_everything
from tru.unlearning import UnlearnContext, run_method
from tru.unlearning.energy import gradient_energies
from tru.unlearning.mechanisms import branch_scales, gate_penalty, ranking_gate, select_modules, uniform_scales
from tru.unlearning.probes import forget_eval, rank_metrics_of, retain_eval, shadow_membership
from tru.unlearning.reverse_repair import ForgetSchedule, is_forgotten, refit_items, refit_users
from tru.unlearning.scalegun import conjugate_gradient
from tru.unlearning.steps import prepare
from tru.unlearning.ultrare import (
    balanced_partition,
    fit_aggregator,
    original_ensemble,
    shard_embeddings,
    shard_recipe,
    train_shard,
)

SMALL = {"mgcn": {"embedding_dim": 16, "knn_k": 5}, "miggt": {"embedding_dim": 16, "hidden_dim": 32}}


def small(params, backbone="mgcn", **unlearn):
    mp = getattr(params.model, backbone).model_copy(update=SMALL[backbone])
    tp = params.train.model_copy(update={"max_epochs": 40, "batch_size": 128, "lr": 0.01, "patience": 10})
    up = params.unlearn.model_copy(
        update={
            "max_epochs": 8,
            "lr": 0.01,
            "repair_lr": 0.01,
            "repair_sample": 2000,
            "repair_batch_size": 256,
            "forget_batch_size": 256,
            **unlearn,
        }
    )
    model = params.model.model_copy(update={"backbone": backbone, backbone: mp})
    return params.model_copy(update={"model": model, "train": tp, "unlearn": up})


def section(p):
    """The chosen backbone's params, as build_backbone takes them."""
    return getattr(p.model, p.model.backbone).model_dump()


@pytest.fixture(scope="module", params=["mgcn", "miggt"])
def world(params, request):
    p = small(params, request.param)
    prior = make_tiny_data(seed=3, n_users=80, n_items=40)
    seed_everything(p.seed)
    base = build_backbone(p.model.backbone, section(p), prior.n_users, prior.n_items, prior.features)
    fit(base, prior.train, EvalSet.build(prior.valid, prior.train, prior.n_users), p.train, p.seed, progress=False)
    base.set_graph(prior.train)
    return p, prior, base


def user_batch(prior, base, users, seed=11):
    users = np.asarray(users)

    def keep(a):
        return a[~np.isin(a[:, 0], users)]

    forget = prior.train[np.isin(prior.train[:, 0], users)]
    heldout = np.concatenate(
        [prior.valid[np.isin(prior.valid[:, 0], users)], prior.test[np.isin(prior.test[:, 0], users)]]
    )
    data = replace(
        prior,
        train=keep(prior.train),
        valid=keep(prior.valid),
        test=keep(prior.test),
        shadow=keep(prior.shadow),
        deleted_users=users,
    )
    return UnlearnContext(
        base=base,
        prior=prior,
        data=data,
        forget=forget,
        heldout=heldout,
        heldout_shadow=prior.shadow[np.isin(prior.shadow[:, 0], users)],
        new_users=users,
        new_items=np.zeros(0, np.int64),
        seed=seed,
    )


def item_batch(prior, base, items, seed=5):
    """A batch of item deletions: every pair of `items` is forgotten, their users stay."""
    items = np.asarray(items)

    def hit(a):
        return np.isin(a[:, 1], items)

    data = replace(
        prior,
        train=prior.train[~hit(prior.train)],
        valid=prior.valid[~hit(prior.valid)],
        test=prior.test[~hit(prior.test)],
        shadow=prior.shadow[~hit(prior.shadow)],
        deleted_items=items,
    )
    return UnlearnContext(
        base=base,
        prior=prior,
        data=data,
        forget=prior.train[hit(prior.train)],
        heldout=np.zeros((0, 2), np.int64),
        heldout_shadow=prior.shadow[hit(prior.shadow)],
        new_users=np.zeros(0, np.int64),
        new_items=items,
        seed=seed,
    )


def test_branch_scales_follow_the_energy_ratio():
    e = {
        "id": {"forget_energy": 1.0, "retain_energy": 1.0, "ratio": 1.0, "params": 10},
        "image": {"forget_energy": 8.0, "retain_energy": 1.0, "ratio": 8.0, "params": 10},
        "text": {"forget_energy": 0.125, "retain_energy": 1.0, "ratio": 0.125, "params": 10},
        "fusion": {"forget_energy": 0.0, "retain_energy": 1.0, "ratio": 0.0, "params": 10},
    }
    s = branch_scales(e, gamma=1.0, s_min=0.25, s_max=4.0)
    assert s["image"] > s["id"] > s["text"]
    assert s["image"] == 4.0 and s["text"] == 0.25 and s["fusion"] == 0.25  # clipped; no forget gradient
    assert branch_scales(e, gamma=0.0, s_min=0.25, s_max=4.0)["image"] == 1.0


def test_uniform_scales_are_the_parameter_weighted_mean_of_the_branch_scales(world):
    e = {
        "id": {"forget_energy": 1.0, "retain_energy": 1.0, "ratio": 1.0, "params": 30},
        "image": {"forget_energy": 8.0, "retain_energy": 1.0, "ratio": 8.0, "params": 10},
    }
    s = branch_scales(e, gamma=1.0, s_min=0.25, s_max=4.0)
    u = uniform_scales(s, e)
    assert set(u) == set(s) and len(set(u.values())) == 1
    assert u["id"] == pytest.approx((30 * s["id"] + 10 * s["image"]) / 40)
    # in the loop: tru_uniform_lr's switch gives every branch that one scale, every epoch
    p, prior, base = world
    pp = p.model_copy(
        update={
            "unlearn": p.unlearn.model_copy(
                update={
                    "max_epochs": 2,
                    "tru": p.unlearn.tru.model_copy(update={"scale_uniform": True, "check_before_reverse": False}),
                }
            )
        }
    )
    res = run_method("tru", user_batch(prior, base, [1, 2, 3]), pp)
    reversed_epochs = [row for row in res.log["epochs"] if "branch_energy" in row]
    assert reversed_epochs
    for row in reversed_epochs:
        assert len(set(row["branch_scales"].values())) == 1
        expect = branch_scales(
            row["branch_energy"], pp.unlearn.tru.scale_gamma, pp.unlearn.tru.scale_min, pp.unlearn.tru.scale_max
        )
        assert row["branch_scales"] == uniform_scales(expect, row["branch_energy"])


def test_scaling_favours_the_branch_that_carries_the_deleted_signal(world):
    p, prior, base = world
    # delete every user of one latent cluster: the `signal` modality encodes the clusters, `noise` does not
    cluster_items = np.arange(prior.n_items)[np.arange(prior.n_items) % 4 == 0]
    counts = np.array(
        [np.isin(prior.train[prior.train[:, 0] == u, 1], cluster_items).mean() for u in range(prior.n_users)]
    )
    ctx = user_batch(prior, base, np.flatnonzero(counts > 0.5))
    model, _ = prepare(ctx, p.model_copy(update={"unlearn": p.unlearn.model_copy(update={"exact_erasure": False})}))
    e = gradient_energies(
        model,
        ctx.forget,
        ctx.data.train,
        NegativeSampler(ctx.data.train, model.n_items),
        np.random.default_rng(0),
        probe_size=4096,
    )
    s = branch_scales(e.group(model.branches()), 1.0, 0.25, 4.0)
    if p.model.backbone == "miggt" and not s["signal"] > s["noise"]:
        # MIG-GT has no item ID embeddings: trained with its dropouts, the encoder of the pure
        # noise features becomes the only per-item memory, and it carries the deleted pairs
        pytest.xfail(f"miggt: noise branch keeps more forget-side energy than signal ({s})")
    assert s["signal"] > s["noise"]


def test_selection_covers_rho_and_zeroes_the_rest(world):
    p, prior, base = world
    energy = {
        f"m{k}": {"forget_energy": 1.0, "retain_energy": 1.0, "ratio": float(k), "params": 10 * (k + 1)}
        for k in range(5)
    }
    chosen, cover = select_modules(energy, rho=0.5)
    assert chosen == ["m4", "m3"] and cover >= 0.5  # most sensitive first, until half the capacity
    # in the loop: with selection only and no repair, unselected modules do not move
    pp = p.model_copy(
        update={
            "unlearn": p.unlearn.model_copy(
                update={
                    "max_epochs": 1,
                    "repair_sample": 0,
                    "exact_erasure": False,
                    "tru": p.unlearn.tru.model_copy(
                        update={
                            "gate": False,
                            "scaling": False,
                            "selection": True,
                            "capacity_rho": 0.3,
                            "refit_share": 0.0,  # no item re-fit: only the reverse epoch moves anything
                            "check_before_reverse": False,
                        }
                    ),
                }
            )
        }
    )
    ctx = user_batch(prior, base, [1, 2, 3])
    res = run_method("tru", ctx, pp)
    selected = res.log["epochs"][0]["selected_modules"]
    assert res.log["epochs"][0]["capacity_covered"] >= 0.3
    moved = {
        m
        for m, names in base.selection_modules().items()
        if any(not torch.equal(dict(base.named_parameters())[n], dict(res.model.named_parameters())[n]) for n in names)
    }
    assert moved and moved <= set(selected)


def test_gate_is_zero_outside_top_k():
    torch.manual_seed(0)
    user_emb = torch.randn(3, 8, requires_grad=True)
    item_emb = torch.randn(30, 8, requires_grad=True)
    users = torch.tensor([0, 0, 1, 2])
    scores = (user_emb @ item_emb.T).detach()
    top = scores[0].argsort(descending=True)
    items = torch.tensor([int(top[0]), int(top[-1]), int(scores[1].argmax()), int(scores[2].argmin())])
    mask = torch.zeros(3, 30, dtype=torch.bool)
    gate, margin, in_top = ranking_gate(user_emb, item_emb, users, items, mask, k=5, temperature=0.1)
    assert in_top.tolist() == [True, False, True, False]
    assert gate[1] == 0 and gate[3] == 0 and gate[0] > 0.5 and gate[2] > 0.5
    # the penalty pushes only the pairs still in the top-K: no gradient reaches the others
    gate_penalty(gate, margin, lam=1.0).backward()
    assert float(item_emb.grad[items[1]].abs().sum()) == 0 and float(item_emb.grad[items[3]].abs().sum()) == 0
    assert float(item_emb.grad[items[0]].abs().sum()) > 0 and float(item_emb.grad[items[2]].abs().sum()) > 0
    assert float(user_emb.grad[2].abs().sum()) == 0  # user 2's only pair is outside its top-K


def test_retrain_equals_training_from_scratch_on_the_retain_set(world, tmp_path, capsys):
    p, prior, base = world
    ctx = user_batch(prior, base, [4, 5, 6])
    a = run_method("retrain", ctx, p)
    # its progress names the training seed (the grid's replicates differ only in it)
    said = capsys.readouterr().out
    assert re.search(rf"^retrain \(training seed {p.seed}\): epoch \d+/{p.train.max_epochs}, loss ", said, re.M), said
    seed_everything(p.seed, p.train.threads)
    fresh = build_backbone(p.model.backbone, section(p), prior.n_users, prior.n_items, prior.features)
    fit(
        fresh,
        ctx.data.train,
        EvalSet.build(ctx.data.valid, ctx.data.train, prior.n_users),
        p.train,
        p.seed,
        candidates=ctx.data.candidates,
        progress=False,
    )
    assert save_checkpoint(tmp_path / "a", a.model, {}) == save_checkpoint(tmp_path / "b", fresh, {})


def test_a_killed_retrain_resumes_to_the_same_model_and_counts_its_earlier_seconds(world, tmp_path, monkeypatch):
    p, prior, base = world
    p = p.model_copy(update={"train": p.train.model_copy(update={"checkpoint_every": 2, "max_epochs": 12})})
    ctx = user_batch(prior, base, [4, 5, 6])
    plain = run_method("retrain", ctx, p)
    assert plain.log["resumed_from_epoch"] == 0 and plain.log["resumed_seconds"] == 0.0

    ctx.resume = tmp_path / "cell"
    cls, calls = type(base), [0]
    loss = cls.loss

    def dying_loss(self, *a):  # killed in epoch 6: the last snapshot is epoch 4's
        calls[0] += 1
        if calls[0] == 5 * -(-len(ctx.data.train) // p.train.batch_size) + 1:
            raise KeyboardInterrupt
        return loss(self, *a)

    monkeypatch.setattr(cls, "loss", dying_loss)
    with pytest.raises(KeyboardInterrupt):
        run_method("retrain", ctx, p)
    monkeypatch.setattr(cls, "loss", loss)
    assert (tmp_path / "cell/retrain/state.json").is_file()
    resumed = run_method("retrain", ctx, p)
    assert resumed.log["resumed_from_epoch"] == 4 and resumed.log["resumed_seconds"] > 0
    assert resumed.seconds > resumed.log["resumed_seconds"]  # its seconds: the snapshot's and this run's
    assert save_checkpoint(tmp_path / "a", resumed.model, {}) == save_checkpoint(tmp_path / "b", plain.model, {})
    assert [h["epoch"] for h in resumed.log["epochs"]] == [h["epoch"] for h in plain.log["epochs"]]


def test_tru_forgets_while_retain_stays_within_tolerance(world):
    p, prior, base = world
    ctx = user_batch(prior, base, list(range(0, 80, 10)))
    before_forget = rank_metrics_of(base, forget_eval(ctx.data, ctx.forget))["recall@20"]
    before_retain = rank_metrics_of(base, retain_eval(ctx.data, "test"))["recall@20"]
    res = run_method(
        "tru",
        ctx,
        _stop_rule(p, p.audit.gate.membership_min_effect, p.unlearn.stop.retain_tolerance, check_before_reverse=False),
    )  # the reverse epochs themselves
    after_forget = rank_metrics_of(res.model, forget_eval(ctx.data, ctx.forget))["recall@20"]
    after_retain = rank_metrics_of(res.model, retain_eval(ctx.data, "test"))["recall@20"]
    assert after_forget < before_forget
    assert after_retain >= 0.9 * before_retain
    assert res.log["epochs"] and {"branch_scales", "selected_modules", "gate", "membership_auc"} <= set(
        res.log["epochs"][0]
    )


def test_forget_schedule_visits_every_pair_before_any_twice():
    # a small D_f: all of it every pass, reshuffled (as before there was a bound)
    small_rng, plain_rng = np.random.default_rng(5), np.random.default_rng(5)
    s = ForgetSchedule(10, 16, small_rng)
    for _ in range(3):
        assert np.array_equal(s.next(), plain_rng.permutation(10))
    # a large one: `size` pairs per pass, and the passes cover D_f before repeating any pair
    s = ForgetSchedule(10, 4, np.random.default_rng(5))
    passes = [s.next() for _ in range(5)]
    assert all(len(x) == 4 for x in passes)
    first = np.concatenate(passes)[:10]
    assert sorted(first.tolist()) == list(range(10))
    assert sorted(np.concatenate(passes)[10:20].tolist()) == list(range(10))


def test_tru_reverse_pass_is_bounded_by_reverse_sample(world, monkeypatch):
    import tru.unlearning.reverse_repair as rr

    # every epoch reverses: the erasure checks never hold (once they do, epochs repair only)
    monkeypatch.setattr(rr, "is_forgotten", lambda row, evidence=False: (False, ""))
    p, prior, base = world
    ctx = user_batch(prior, base, list(range(0, 80, 10)))
    assert len(ctx.forget) > 40
    q = p.model_copy(
        update={
            "unlearn": p.unlearn.model_copy(
                update={
                    "reverse_sample": 16,
                    "max_epochs": 3,
                    "stop": p.unlearn.stop.model_copy(update={"retain_tolerance": -1.0}),  # never met
                }
            )
        }
    )
    res = run_method("tru", ctx, q)
    assert res.log["reverse_sample"] == 16
    assert [e["reverse_pairs"] for e in res.log["epochs"]] == [16, 16, 16]
    whole = run_method(
        "tru", ctx, p.model_copy(update={"unlearn": q.unlearn.model_copy(update={"reverse_sample": 4096})})
    )
    # a D_f smaller than reverse_sample: TRU's passes take half of it (unlearn.tru.reverse_split)
    assert [e["reverse_pairs"] for e in whole.log["epochs"]] == [-(-len(ctx.forget) // 2)] * 3


def _stop_rule(p, min_effect, tolerance, residue_share=None, **tru):
    """`p` with the stop rule's knobs: the membership test's minimum effect (0.5: the threshold
    is AUC 1.0, always met), the retain tolerance (-1: never met) and the item-side check's
    share (1.0: only items that lost everything are checked, i.e. none)."""
    up = p.unlearn.model_copy(
        update={
            "stop": p.unlearn.stop.model_copy(update={"retain_tolerance": tolerance}),
            "tru": p.unlearn.tru.model_copy(update=tru),
        }
    )
    gate = p.audit.gate.model_copy(
        update={"membership_min_effect": min_effect}
        | ({} if residue_share is None else {"residue_min_removed_share": residue_share})
    )
    return p.model_copy(update={"unlearn": up, "audit": p.audit.model_copy(update={"gate": gate})})


def test_once_the_erasure_checks_hold_an_epoch_repairs_without_reversing(world):
    """Reversing past the point where the checks hold forgets more than a retrain would: the
    epochs after it only repair, until retain utility is back within tolerance."""
    p, prior, base = world
    ctx = user_batch(prior, base, list(range(0, 80, 10)))
    # the checks always hold (threshold AUC 1.0, no item checked), utility never within tolerance
    q = _stop_rule(p, 0.5, -1.0, residue_share=1.0, check_before_reverse=False)
    q = q.model_copy(update={"unlearn": q.unlearn.model_copy(update={"max_epochs": 3})})
    res = run_method("tru", ctx, q)
    epochs = res.log["epochs"]
    assert len(epochs) == 3 and epochs[0]["reverse_pairs"] > 0
    assert [e["reverse_pairs"] for e in epochs[1:]] == [0, 0]
    assert all(e["reverse"].startswith("skipped") and e["repair_pairs"] > 0 for e in epochs[1:])


def test_tru_reverses_nothing_when_the_stop_rule_already_holds(world, monkeypatch):
    """Reverse only where the deletion survives: checked on the model the epochs would start
    from (exact step, rebuilt graphs, refit). A rule that holds at once, by a check with power,
    runs no epoch, and the model is that starting model; without the check the same rule stops
    after epoch 1."""
    import tru.unlearning.reverse_repair as rr

    # a threshold of AUC 1.0 that theta_0 exceeded: power, as the gate judges it, granted here
    monkeypatch.setattr(rr, "original_power", lambda ctx, gate: {"membership_power": True, "residue_power": False})
    p, prior, base = world
    ctx = user_batch(prior, base, list(range(0, 80, 10)))
    met = _stop_rule(p, 0.5, 0.99, residue_share=1.0)  # any AUC is <= 1.0, any retain utility within 99%
    res = run_method("tru", ctx, met)
    assert res.log["epochs"] == []
    assert res.log["stop"].startswith("before the first reverse epoch: forgotten pairs rank like shadow pairs")
    assert set(res.log["probe_start"]) == {
        "forget_recall@20",
        "retain_shadow_recall@20",
        "membership_auc",
        "membership_threshold",
        "residue_checked",
        "residue_flagged",
        "membership_power",
        "residue_power",
    }
    # where the night's seconds went, phase by phase: timings (split off the log, which stays byte-identical)
    from tru.stages.context import split_timings

    phases = {"exact_step", "retain_reference", "probe_before", "user_refit", "refit", "probe_start"}
    log, timings = split_timings(res.log)
    assert {f"{phase}_seconds" for phase in phases} <= set(timings)
    assert all(t >= 0 for t in timings.values()) and not any(k.endswith("seconds") for k in log)
    start = run_method("tru", ctx, met.model_copy(update={"unlearn": met.unlearn.model_copy(update={"max_epochs": 0})}))
    for (name, a), b in zip(res.model.named_parameters(), start.model.parameters()):
        assert torch.equal(a, b), name
    unchecked = run_method("tru", ctx, _stop_rule(p, 0.5, 0.99, residue_share=1.0, check_before_reverse=False))
    assert len(unchecked.log["epochs"]) == 1 and "stop" in unchecked.log["epochs"][0]
    assert "stop" not in unchecked.log and "probe_start" not in unchecked.log
    # the uniform baseline always reverses: the check is TRU's
    assert len(run_method("reverse_repair", ctx, met).log["epochs"]) == 1


def test_tru_holds_retain_utility_to_the_chains_start_as_well(world, monkeypatch, tmp_path):
    """unlearn.tru.retain_from_chain_start: a night may lose up to the tolerance against its
    input, and nights of such losses add up. Where the chain's start ranks the night's shadow
    pairs better than theta_0 by more than the tolerance, the rule's retain condition fails
    before the first epoch (the loop runs), where against theta_0 alone it held (no epoch)."""
    import tru.unlearning.reverse_repair as rr
    from tru.checkpoint import save_checkpoint

    monkeypatch.setattr(rr, "original_power", lambda ctx, gate: {"membership_power": True, "residue_power": False})
    p, prior, base = world
    save_checkpoint(tmp_path / "start", base, {"seed": 0})
    rule = _stop_rule(p, 0.5, 0.4, residue_share=1.0)  # the checks hold; 40% retain tolerance

    def knob(on: bool):
        tru = rule.unlearn.tru.model_copy(update={"retain_from_chain_start": on})
        return rule.model_copy(update={"unlearn": rule.unlearn.model_copy(update={"tru": tru})})

    met, anchored = knob(False), knob(True)
    # the chain's start (theta_0's weights, loaded again) ranks shadow pairs twice as well as theta_0
    real = rr.rank_metrics_of

    def ranked(model, es, *a, **k):
        out = real(model, es, *a, **k)
        start = getattr(ranked, "start", None)
        return {**out, "recall@20": out["recall@20"] * 2} if model is start else out

    monkeypatch.setattr(rr, "rank_metrics_of", ranked)
    runs = {}
    runs_of = (("theta_0", anchored, None), ("off", met, tmp_path / "start"), ("on", anchored, tmp_path / "start"))
    for name, q, start in runs_of:
        ctx = user_batch(prior, base, list(range(0, 80, 10)))
        ctx.chain_start_path = start
        ranked.start = ctx.chain_start
        runs[name] = run_method("tru", ctx, q).log
    for name in ("theta_0", "off"):  # no chain start, or the knob off: theta_0's utility is the reference
        log = runs[name]
        assert log["epochs"] == [] and log["retain_reference_shadow_recall@20"] == log["base_retain_shadow_recall@20"]
        assert "chain_start_retain_shadow_recall@20" not in log
    on = runs["on"]
    assert on["chain_start_retain_shadow_recall@20"] == pytest.approx(2 * on["base_retain_shadow_recall@20"])
    assert on["retain_reference_shadow_recall@20"] == on["chain_start_retain_shadow_recall@20"]
    assert "stop" not in on or not on["stop"].startswith("before the first reverse epoch")
    assert len(on["epochs"]) >= 1
    # the checks hold from the start: the epochs repair, they do not reverse
    assert all(e["reverse_pairs"] == 0 for e in on["epochs"])


def test_without_a_check_with_power_the_pre_check_asks_the_top_20_comparison(world, monkeypatch):
    """A check that theta_0 passes too is no evidence that the exact step removed anything:
    the pre-check then skips the reverse pass only where the forgotten pairs reach their users'
    top-20 no more often than shadow pairs, and TRU's loop after an epoch asks the same."""
    import tru.unlearning.reverse_repair as rr

    p, prior, base = world
    met = _stop_rule(p, 0.5, 0.99, residue_share=1.0)  # threshold AUC 1.0: no model exceeds it, theta_0 neither
    ctx = user_batch(prior, base, list(range(0, 80, 10)))
    res = run_method("tru", ctx, met)
    start = res.log["probe_start"]
    assert start["membership_power"] is False and start["residue_power"] is False
    assert start["forget_recall@20"] <= start["retain_shadow_recall@20"]  # the tiny world's erased users
    assert res.log["epochs"] == [] and "no erasure check has power on this batch" in res.log["stop"]
    # the same batch, its forgotten pairs seen above their users' shadow pairs before and after
    # every epoch: the powerless membership test passes throughout, and TRU reverses on to
    # max_epochs; MMRecUn's loop, which asks no evidence, stops on that pass after epoch 1
    probe = rr.probe_metrics
    monkeypatch.setattr(rr, "probe_metrics", lambda *a: {**probe(*a), "forget_recall@20": 2.0})
    lifted = met.model_copy(update={"unlearn": met.unlearn.model_copy(update={"max_epochs": 3})})
    res = run_method("tru", user_batch(prior, base, list(range(0, 80, 10))), lifted)
    assert res.log["probe_start"]["forget_recall@20"] == 2.0 and "stop" not in res.log
    epochs = res.log["epochs"]
    assert len(epochs) == 3 and all(e["reverse_pairs"] > 0 and "stop" not in e for e in epochs)
    assert all(e["membership_auc"] <= e["membership_threshold"] and e["membership_power"] is False for e in epochs)
    mmrecun = run_method("reverse_repair", user_batch(prior, base, list(range(0, 80, 10))), lifted).log["epochs"]
    assert len(mmrecun) == 1 and "forgotten pairs rank like shadow pairs" in mmrecun[0]["stop"]
    # the lifted probe lowered to its users' shadow pairs' from epoch 2's on: TRU stops there
    repairs = {"n": 0}
    repair = rr.repair_pass

    def counted(*a):
        repairs["n"] += 1
        return repair(*a)

    def lowered(*a):
        row = probe(*a)
        return {**row, "forget_recall@20": 2.0 if repairs["n"] < 2 else row["retain_shadow_recall@20"]}

    monkeypatch.setattr(rr, "repair_pass", counted)
    monkeypatch.setattr(rr, "probe_metrics", lowered)
    res = run_method("tru", user_batch(prior, base, list(range(0, 80, 10))), lifted)
    assert len(res.log["epochs"]) == 2 and "stop" not in res.log["epochs"][0]
    assert "no erasure check has power" in res.log["epochs"][1]["stop"]


def test_tru_reverses_half_the_forget_set_per_pass(world, monkeypatch):
    """unlearn.tru.reverse_split: each of TRU's reverse passes visits at most 1/reverse_split of
    D_f (and at most unlearn.reverse_sample pairs); MMRecUn's passes take all of a small D_f."""
    import tru.unlearning.reverse_repair as rr

    # every epoch reverses: the erasure checks never hold (once they do, epochs repair only)
    monkeypatch.setattr(rr, "is_forgotten", lambda row, evidence=False: (False, ""))
    p, prior, base = world
    ctx = user_batch(prior, base, list(range(0, 80, 10)))
    n = len(ctx.forget)
    never = _stop_rule(p, 0.0, -1.0, check_before_reverse=False)  # never met: every epoch reverses
    never = never.model_copy(update={"unlearn": never.unlearn.model_copy(update={"max_epochs": 2})})
    assert p.unlearn.tru.reverse_split == 2 and n < p.unlearn.reverse_sample
    half = run_method("tru", ctx, never)
    assert half.log["reverse_sample"] == -(-n // 2)
    assert [e["reverse_pairs"] for e in half.log["epochs"]] == [-(-n // 2)] * 2
    whole = _stop_rule(p, 0.0, -1.0, check_before_reverse=False, reverse_split=1)
    whole = whole.model_copy(update={"unlearn": whole.unlearn.model_copy(update={"max_epochs": 1})})
    assert [e["reverse_pairs"] for e in run_method("tru", ctx, whole).log["epochs"]] == [n]
    assert [e["reverse_pairs"] for e in run_method("reverse_repair", ctx, never).log["epochs"]] == [n, n]


def test_trus_step_grows_while_a_pass_leaves_the_forgotten_pairs_above_the_shadow_line(world, monkeypatch):
    """unlearn.tru.step_growth_max: a reverse pass after which the forgotten pairs' Recall@20 did
    not fall, and still lies above retained users' shadow pairs' (the top-20 fallback's line),
    doubles the next pass's step, up to the cap; at or below that line the step stays (a failing
    check there is the membership test's), and with the cap at 1 it never grows."""
    import tru.unlearning.reverse_repair as rr

    monkeypatch.setattr(rr, "is_forgotten", lambda row, evidence=False: (False, ""))  # every epoch reverses
    p, prior, base = world
    probe = rr.probe_metrics

    def run(forget: float, cap: float, epochs: int = 4):
        monkeypatch.setattr(rr, "probe_metrics", lambda *a: {**probe(*a), "forget_recall@20": forget})
        q = _stop_rule(p, 0.0, -1.0, check_before_reverse=False, step_growth_max=cap)
        q = q.model_copy(update={"unlearn": q.unlearn.model_copy(update={"max_epochs": epochs})})
        return run_method("tru", user_batch(prior, base, list(range(0, 80, 10))), q)

    stuck = run(2.0, 4.0)  # never falls, always above the shadow line
    assert [e["step_growth"] for e in stuck.log["epochs"]] == [1.0, 2.0, 4.0, 4.0]
    assert all(e["reverse_pairs"] > 0 for e in stuck.log["epochs"])
    below = run(-1.0, 4.0)  # never falls, but below the shadow line
    assert [e["step_growth"] for e in below.log["epochs"]] == [1.0] * 4
    off = run(2.0, 1.0)
    assert all("step_growth" not in e for e in off.log["epochs"])
    assert p.unlearn.tru.step_growth_max > 1  # configured on
    # the grown step is the one taken: epoch 1 alike, epoch 2 (twice the step) apart
    one, two = run(2.0, 1.0, epochs=2), run(2.0, 4.0, epochs=2)
    first = run(2.0, 4.0, epochs=1)
    same = run(2.0, 1.0, epochs=1)
    for a, b in zip(first.model.parameters(), same.model.parameters()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(one.model.parameters(), two.model.parameters()))


def test_the_stop_rules_power_is_the_gates(world):
    """original_power judges power as the gate does: the membership test on theta_0 exceeds
    its threshold (tru.audit.shadow's `power`), computed once per batch."""
    from tru.unlearning.steps import original_power

    p, prior, base = world
    for gate in (p.audit.gate, p.audit.gate.model_copy(update={"membership_min_effect": 0.5})):
        ctx = user_batch(prior, base, list(range(0, 80, 10)))
        power = original_power(ctx, gate)
        assert power["membership_power"] == shadow_membership(base, ctx, gate, reference=base)["power"]
        assert original_power(ctx, gate) == power and len(ctx._original_power) == 1
    assert not power["membership_power"]  # AUC 1.0 is never exceeded


def test_tru_reverses_while_the_stop_rule_fails_at_the_start(world):
    p, prior, base = world
    ctx = user_batch(prior, base, list(range(0, 80, 10)))
    never = _stop_rule(p, 0.0, -1.0)  # retain Recall@20 at least twice theta_0's: never met
    never = never.model_copy(update={"unlearn": never.unlearn.model_copy(update={"max_epochs": 2})})
    res = run_method("tru", ctx, never)
    assert "stop" not in res.log and len(res.log["epochs"]) == 2
    assert res.log["probe_start"]["membership_auc"] is not None


def test_tru_reverses_with_its_own_step_size_and_mmrecun_with_the_shared_one(world):
    """unlearn.tru.lr is TRU's reverse step (unset: unlearn.lr); MMRecUn's uniform loop keeps
    unlearn.lr whatever TRU's is."""
    p, prior, base = world
    ctx = user_batch(prior, base, list(range(0, 80, 10)))
    q = _stop_rule(p, 0.0, -1.0, check_before_reverse=False)  # never met: every epoch reverses
    q = q.model_copy(update={"unlearn": q.unlearn.model_copy(update={"max_epochs": 1, "lr": 0.002})})

    def with_tru_lr(params, lr):
        up = params.unlearn
        return params.model_copy(
            update={"unlearn": up.model_copy(update={"tru": up.tru.model_copy(update={"lr": lr})})}
        )

    def same(a, b) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a.model.parameters(), b.model.parameters()))

    shared = run_method("tru", ctx, with_tru_lr(q, None))
    assert same(shared, run_method("tru", ctx, with_tru_lr(q, 0.002)))  # unset: unlearn.lr
    assert not same(shared, run_method("tru", ctx, with_tru_lr(q, 0.02)))
    assert same(run_method("reverse_repair", ctx, q), run_method("reverse_repair", ctx, with_tru_lr(q, 0.02)))


def test_exact_erasure_redraws_private_rows(world):
    p, prior, base = world
    ctx = user_batch(prior, base, [7])
    model, log = prepare(ctx, p)
    assert "user_embedding" in log["erased_parameters"]
    assert not torch.equal(model.user_embedding[7], base.user_embedding[7])
    assert torch.equal(model.user_embedding[8], base.user_embedding[8])
    again, _ = prepare(ctx, p)
    assert torch.equal(again.user_embedding[7], model.user_embedding[7])  # seeded from the batch


@pytest.mark.parametrize("scope", ["fusion", "selected"])
def test_gate_scope_decides_which_parameters_the_gate_pushes(world, scope):
    """One reverse step, no repair: the gate's gradient reaches the user embeddings only when
    its scope is the selected modules; with scope `fusion` they move exactly as without it."""
    p, prior, base = world
    forget = prior.train[::5]
    data = replace(prior, train=np.delete(prior.train, np.s_[::5], axis=0))
    ctx = UnlearnContext.of_pairs(base, prior, data, forget, seed=5)
    moved = {}
    for gate in (True, False):
        mech = p.unlearn.tru.model_copy(
            update={
                "gate": gate,
                "gate_scope": scope,
                "gate_lambda": 5.0,
                "scaling": False,
                "selection": False,
                "check_before_reverse": False,
            }
        )  # one reverse step, always
        up = p.unlearn.model_copy(
            update={"max_epochs": 1, "forget_batch_size": len(forget), "repair_sample": 0, "tru": mech}
        )
        res = run_method("tru", ctx, p.model_copy(update={"unlearn": up}))
        assert res.log["epochs"][0]["repair_pairs"] == 0
        moved[gate] = res.model.user_embedding.detach().clone()
    assert not torch.equal(moved[True], base.user_embedding.detach())
    if scope == "fusion":
        assert torch.equal(moved[True], moved[False])
    else:
        assert not torch.equal(moved[True], moved[False])


def test_multidelete_decouples_forgotten_pairs_and_keeps_retained_embeddings(world):
    p, prior, base = world
    forget = prior.train[::5]  # interaction level: every user keeps most of their items
    data = replace(prior, train=np.delete(prior.train, np.s_[::5], axis=0))
    ctx = UnlearnContext.of_pairs(base, prior, data, forget, seed=5)
    before_forget = rank_metrics_of(base, forget_eval(ctx.data, ctx.forget))["recall@20"]
    before_retain = rank_metrics_of(base, retain_eval(ctx.data, "test"))["recall@20"]
    res = run_method("multidelete", ctx, p)
    epochs = res.log["epochs"]
    assert len(epochs) == p.unlearn.multidelete.epochs
    assert epochs[-1]["decoupling"] < epochs[0]["decoupling"]
    assert rank_metrics_of(res.model, forget_eval(ctx.data, ctx.forget))["recall@20"] < before_forget
    assert rank_metrics_of(res.model, retain_eval(ctx.data, "test"))["recall@20"] >= 0.9 * before_retain
    # with the retention terms alone nothing has a reason to move: theta_0 is their optimum
    quiet = p.unlearn.model_copy(
        update={
            "multidelete": p.unlearn.multidelete.model_copy(update={"decouple_weight": 0.0}),
            "rebuild_graphs": False,
        }
    )
    still = run_method("multidelete", ctx, p.model_copy(update={"unlearn": quiet})).model
    for (name, a), b in zip(still.named_parameters(), base.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_multidelete_keeps_erased_rows_where_the_exact_erasure_put_them(world):
    p, prior, base = world
    ctx = user_batch(prior, base, [1, 2, 3])
    erased, _ = prepare(ctx, p)
    model = run_method("multidelete", ctx, p).model
    rows = torch.as_tensor(ctx.new_users)
    assert torch.equal(model.user_embedding.detach()[rows], erased.user_embedding.detach()[rows])


def test_an_item_only_batch_compares_the_deleted_items_pairs_with_their_shadow_pairs(world):
    """A deleted item's forgotten pairs are compared with that item's shadow pairs (never
    trained on): after the exact step both see the same re-drawn row, so the test holds. An item
    without a shadow pair gives no membership question, and the stop rule falls back to the
    forget probe."""
    p, prior, base = world
    counts = np.bincount(prior.shadow[:, 1], minlength=prior.n_items)
    items = np.flatnonzero(counts >= 2)[:2]
    assert len(items) == 2

    ctx = item_batch(prior, base, items)
    members, non, sm, sn = ctx.membership_strata()
    assert len(members) == len(ctx.forget) and set(sm) == set(sn) == set((-1 - items).tolist())
    original = shadow_membership(base, ctx, p.audit.gate)
    assert original["auc"] is not None and original["members"] == len(ctx.forget)
    erased, _ = prepare(ctx, p)
    after = shadow_membership(erased, ctx, p.audit.gate)
    assert not after["exceeds"]  # both sides see the same re-drawn item row
    assert original["threshold"] == after["threshold"]  # one null per context
    # the fallback of the rule, on rows without a membership AUC or a checked item
    assert is_forgotten({"membership_auc": None, "forget_recall@20": 0.1, "retain_shadow_recall@20": 0.2})[0]
    assert not is_forgotten({"membership_auc": None, "forget_recall@20": 0.3, "retain_shadow_recall@20": 0.2})[0]
    row = {"membership_auc": 0.52, "membership_threshold": 0.55, "residue_flagged": 0, "residue_checked": 3}
    assert is_forgotten(row)[0]
    assert not is_forgotten({**row, "membership_auc": 0.7})[0]
    assert not is_forgotten({**row, "residue_flagged": 1})[0]
    # as evidence (the pre-check), a passing check counts only with power; else the fallback
    top = {"forget_recall@20": 0.3, "retain_shadow_recall@20": 0.2}
    powerless = {**row, **top, "membership_power": False, "residue_power": False}
    assert is_forgotten(powerless)[0] and not is_forgotten(powerless, evidence=True)[0]
    assert is_forgotten({**powerless, "forget_recall@20": 0.1}, evidence=True)[0]
    assert is_forgotten({**powerless, "membership_power": True}, evidence=True)[0]
    assert is_forgotten({**powerless, "residue_power": True}, evidence=True)[0]
    # a check that fails fails, with power or without
    assert not is_forgotten({**powerless, "forget_recall@20": 0.1, "membership_auc": 0.7}, evidence=True)[0]


def test_scalegun_takes_one_newton_step_on_the_linearly_propagated_tables(world):
    p, prior, base = world
    ctx = user_batch(prior, base, [2, 12, 22, 32])
    prepared, _ = prepare(ctx, p)
    res = run_method("scalegun", ctx, p)
    log = res.log
    linear = set(base.linear_parameters())
    after, before = dict(res.model.named_parameters()), dict(prepared.named_parameters())
    moved = {n for n in after if not torch.equal(after[n], before[n])}
    assert moved and moved <= linear  # only where the propagation is linear
    for u in ctx.new_users:  # the exactly erased rows stay where a retrain leaves them
        assert torch.equal(after["user_embedding"][u], before["user_embedding"][u])
    # the Newton step shrinks the retain objective's gradient; the certificate is reported, not claimed
    assert log["certificate"]["gradient_residual_norm"] < log["gradient_norm"]
    assert log["certificate"]["holds"] is False and log["certificate"]["training_noise_sigma_needed"] > 0
    assert 1 <= log["conjugate_gradient"]["iterations"] <= p.unlearn.scalegun.cg_iters


def test_conjugate_gradient_solves_a_positive_definite_system():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g)
    h = a @ a.T + 0.5 * torch.eye(6)
    b = [torch.randn(6, generator=g)]
    x, info = conjugate_gradient(lambda v: [h @ v[0]], b, iters=50)
    assert torch.allclose(h @ x[0], b[0], atol=1e-4) and info["relative_residual"] < 1e-4


def test_shard_recipe_gives_a_shard_the_steps_a_model_of_all_the_data_gets(params):
    update = {"batch_size": 100, "eval_every": 1, "max_epochs": 300, "lr_decay_every": 3, "checkpoint_every": 10}
    t = params.train.model_copy(update=update)
    # 10 batches per epoch on all the data, 2 on the shard (a partial batch is a step too)
    r = shard_recipe(t, 1000, 150)
    assert (r.eval_every, r.max_epochs, r.lr_decay_every, r.checkpoint_every) == (5, 1500, 15, 50)
    assert r.patience == t.patience  # counted in validations, which come every 5 epochs
    steps = ("eval_every", "max_epochs", "lr_decay_every", "checkpoint_every")
    assert all(getattr(r, k) * 2 == getattr(t, k) * 10 for k in steps)  # the same in steps
    assert r.model_dump(exclude=set(steps)) == t.model_dump(exclude=set(steps))
    assert shard_recipe(t, 1000, 1000) == t  # one shard: the recipe itself


def test_balanced_partition_keeps_shards_within_capacity_and_clusters_together():
    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal(c, 0.1, size=(20, 2)) for c in ((0, 0), (5, 5), (0, 5))])
    a = balanced_partition(blobs, 3, seed=1)
    assert np.bincount(a, minlength=3).tolist() == [20, 20, 20]
    assert all(len(set(a[s : s + 20])) == 1 for s in (0, 20, 40))  # each blob one shard
    assert np.array_equal(a, balanced_partition(blobs, 3, seed=1))
    skewed = np.concatenate([rng.normal(0, 0.1, size=(50, 2)), rng.normal(5, 0.1, size=(10, 2))])
    assert np.bincount(balanced_partition(skewed, 3, seed=1)).max() <= 20  # capacity ceil(60 / 3)


def test_ultrare_retrains_exactly_the_shards_a_deletion_touches(world, tmp_path, capsys):
    p, prior, base = world
    p = p.model_copy(
        update={
            "train": p.train.model_copy(update={"max_epochs": 4}),
            "unlearn": p.unlearn.model_copy(
                update={"ultrare": p.unlearn.ultrare.model_copy(update={"shards": 3, "cache_dir": str(tmp_path)})}
            ),
        }
    )
    ctx = user_batch(prior, base, [5])
    first = run_method("ultrare", ctx, p)
    assert first.log["ensemble"]["cached"] is False and first.log["setup_seconds"] > 0
    said = capsys.readouterr().out
    again = run_method("ultrare", ctx, p)  # the ensemble of theta_0's data is trained once
    assert again.log["ensemble"]["cached"] is True  # and no shard trained (the output, below)
    assign = first.model.user_shard.numpy()
    k = int(assign[5])
    assert first.log["touched_shards"] == [k]

    # progress on a long run (a shard trains for minutes on ML-1M): which shards, then each
    # shard's epochs (lines, not a bar: the output is not a terminal here), out of the recipe's
    # max_epochs counted in steps (shard_recipe: a third of the batches, three times the epochs)
    def most(data, j):
        n = int(np.isin(data.train[:, 0], np.flatnonzero(assign == j)).sum())
        return shard_recipe(p.train, len(data.train), n).max_epochs

    assert "training the original data's ensemble of 3 shards once" in said
    for j in range(3):
        assert most(prior, j) > 4
        assert re.search(rf"^ultrare shard {j} \({j + 1} of 3\): epoch \d+/{most(prior, j)}, loss ", said, re.M), said
    assert "retraining the 1 of 3 shards the deletion touches" in said
    pattern = rf"^ultrare retrain shard {k} \(1 of 1\): epoch \d+/{most(ctx.data, k)}, loss "
    assert re.search(pattern, said, re.M), said
    assert "original data's ensemble" not in capsys.readouterr().out  # the second run used the cache
    # another base model of the same data partitions the users otherwise: its own ensemble, not
    # the cached one (whose shards were grouped by the first model's embeddings)
    seed_everything(p.seed + 1)
    other = build_backbone(p.model.backbone, section(p), prior.n_users, prior.n_items, prior.features)
    fit(other, prior.train, EvalSet.build(prior.valid, prior.train, prior.n_users), p.train, p.seed + 1, progress=False)
    other.set_graph(prior.train)
    up = p.unlearn.ultrare
    with torch.no_grad():
        split = balanced_partition(other.embeddings()[0].numpy(), up.shards, p.seed, up.partition_iters)
    assert not np.array_equal(split, first.model.user_shard.numpy())
    ens2, info2 = original_ensemble(replace(ctx, base=other), p)
    assert info2["cached"] is False and info2["folder"] != first.log["ensemble"]["folder"]
    assert np.array_equal(ens2.user_shard.numpy(), split)
    ens, _ = original_ensemble(ctx, p)
    for j in range(3):  # untouched shards: as trained on theta_0's data, bit for bit
        same = all(
            torch.equal(a, b)
            for a, b in zip(first.model.shards[j].state_dict().values(), ens.shards[j].state_dict().values())
        )
        assert same == (j != k)
    # the touched shard equals training it from scratch on its retained interactions
    users_k = np.flatnonzero(assign == k)
    scratch, _, _ = train_shard(
        p,
        ctx.data,
        ctx.data.train[np.isin(ctx.data.train[:, 0], users_k)],
        users_k,
        p.seed + k,
        ctx.data.candidates,
        "check",
    )
    assert all(
        torch.equal(a, b) for a, b in zip(first.model.shards[k].state_dict().values(), scratch.state_dict().values())
    )
    # the learned combiner: trained again after the deletion, on the retained pairs only (the
    # same fit from them alone gives the same weights), its loss going down; it ranks the users
    assert up.combiner == "attention" and first.log["aggregator"]["losses"][-1] < first.log["aggregator"]["losses"][0]
    agg, _ = fit_aggregator(
        list(first.model.shards),
        assign,
        ctx.data.train,
        ctx.data.candidates,
        up.combiner_epochs,
        up.combiner_lr,
        p.train.batch_size,
        section(p)["reg_weight"],
        p.seed,
    )
    assert all(
        torch.equal(a, b) for a, b in zip(agg.state_dict().values(), first.model.aggregator.state_dict().values())
    )
    users = torch.arange(prior.n_users)
    rows = first.model.score_fn()(users)
    user_emb, item_emb = shard_embeddings(first.model.shards)
    with torch.no_grad():
        expect = agg.users(user_emb, users, first.model.user_shard) @ agg.items(item_emb).T
    assert torch.allclose(rows, expect, atol=1e-5)
    # without it (combiner own_shard), each user is ranked by its own shard's sub-model
    first.model.aggregator = None
    rows = first.model.score_fn()(users)
    own = first.model.shards[k]
    own.eval()
    assert torch.allclose(rows[5], own.score_fn()(torch.tensor([5]))[0])


def test_refit_moves_only_the_rows_of_items_that_lost_a_large_share(world):
    p, prior, base = world
    # delete the users of one item's audience but one: that item loses most of its interactions
    pop = np.bincount(prior.train[:, 1], minlength=prior.n_items)
    item = int(np.argmax(pop))
    users = np.unique(prior.train[prior.train[:, 1] == item, 0])[:-1]
    ctx = user_batch(prior, base, users)
    model, _ = prepare(ctx, p)
    if not model.item_tables():  # MIG-GT encodes items from their features: nothing to re-fit
        assert refit_items(
            model, ctx, 0.2, 5, 0.01, NegativeSampler(ctx.data.train, model.n_items), np.random.default_rng(0), 256
        ) == {"items": 0, "steps": 0}
        return
    lost = np.bincount(ctx.forget[:, 1], minlength=prior.n_items) / np.maximum(pop, 1)
    before = model.item_embedding.detach().clone()
    log = refit_items(
        model, ctx, 0.5, 5, 0.01, NegativeSampler(ctx.data.train, model.n_items), np.random.default_rng(0), 256
    )
    moved = (model.item_embedding.detach() != before).any(dim=1).numpy()
    kept = ctx.data.train[:, 1]
    expected = (lost >= 0.5) & np.isin(np.arange(prior.n_items), kept)
    assert moved[item] and log["items"] == int(expected.sum())
    assert np.array_equal(moved, expected)  # no other row, and nothing else in the model, moved
    assert torch.equal(model.user_embedding, prepare(ctx, p)[0].user_embedding)


def pair_batch(prior, base, pick, seed=11):
    """A batch of interaction requests: the training pairs at `pick` (their users and items stay)."""
    forget = prior.train[pick]
    keep = np.ones(len(prior.train), bool)
    keep[pick] = False
    data = replace(prior, train=prior.train[keep])
    empty = np.zeros((0, 2), np.int64)
    return UnlearnContext(
        base=base,
        prior=prior,
        data=data,
        forget=forget,
        heldout=empty,
        heldout_shadow=empty,
        new_users=np.zeros(0, np.int64),
        new_items=np.zeros(0, np.int64),
        seed=seed,
    )


@pytest.mark.parametrize("approximate", [False, True])
def test_the_user_refit_moves_only_the_rows_of_users_who_lost_pairs(world, approximate):
    """refit_users, through the whole forward pass or (`approximate`) the backbone's rows loss:
    the rows of users who lost pairs are re-drawn and fitted; no other parameter moves (MGCN's
    rows loss is exact either way; MIG-GT's exists only as the approximation)."""
    p, prior, base = world
    users = np.array([1, 5, 9])
    pick = np.flatnonzero(np.isin(prior.train[:, 0], users))[::3]
    ctx = pair_batch(prior, base, pick)
    assert np.array_equal(ctx.pair_users(), users)
    model, _ = prepare(ctx, p)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    log = refit_users(
        model, ctx, 5, 0.01, NegativeSampler(ctx.data.train, model.n_items), np.random.default_rng(0), 256, approximate
    )
    miggt = p.model.backbone == "miggt"
    assert log["users"] == 3 and log["steps"] == 5 and log["local"] == (approximate or not miggt)
    assert log.get("approximate", False) == (approximate and miggt)  # the log says where the loss was approximate
    moved = (model.user_embedding.detach() != before.pop("user_embedding")).any(dim=1).numpy()
    assert np.array_equal(np.flatnonzero(moved), users)
    named = dict(model.named_parameters())
    assert all(torch.equal(named[name].detach(), value) for name, value in before.items())


def test_the_users_of_a_deleted_item_are_re_fitted_where_the_backbone_still_scores_it(world):
    """`unlearn.tru.user_refit_item_users`: the users who lost a pair to a deleted item (they
    stay) are re-fitted too, on a backbone whose items own no row (MIG-GT scores the item from
    its features, and their rows were fitted to rank it); on one whose item rows are erased with
    the item (MGCN) the option changes nothing. Off, they are not re-fitted."""
    p, prior, base = world
    item = int(np.bincount(prior.train[:, 1], minlength=prior.n_items).argmax())

    ctx = item_batch(prior, base, [item])
    its_users = np.unique(ctx.forget[:, 0])
    assert len(ctx.pair_users()) == 0 and np.array_equal(ctx.pair_users(item_users=True), its_users)

    def moved_rows(item_users: bool) -> np.ndarray:
        model, _ = prepare(ctx, p)
        before = model.user_embedding.detach().clone()
        sampler = NegativeSampler(ctx.data.train, model.n_items)
        refit_users(model, ctx, 3, 0.01, sampler, np.random.default_rng(0), 256, True, item_users=item_users)
        return np.flatnonzero((model.user_embedding.detach() != before).any(dim=1).numpy())

    assert len(moved_rows(False)) == 0
    expected = its_users if not base.item_tables() else np.zeros(0, np.int64)
    assert np.array_equal(moved_rows(True), expected)


@pytest.mark.parametrize("holds_after", [False, True])
def test_the_final_repair_never_keeps_an_epoch_that_undoes_the_erasure(world, monkeypatch, holds_after):
    """The final repair restores utility on retained pairs; an epoch after which the gate's
    erasure checks no longer hold (they held on its input) is never the model it returns."""
    import copy

    import tru.unlearning.repair as rep

    p, prior, base = world
    ctx = user_batch(prior, base, list(range(0, 80, 10)))

    def noisy():  # below theta_0's utility: the repair has work to do
        model = copy.deepcopy(base)
        model.set_graph(ctx.data.train)
        with torch.no_grad():
            gen = torch.Generator().manual_seed(0)
            for t in model.parameters():
                t.add_(0.1 * torch.randn(t.shape, generator=gen))
        return model

    params = p.repair.model_copy(update={"tolerance": 0.0, "max_epochs": 3, "patience": 5})
    theta0 = {k: v.clone() for k, v in base.state_dict().items()}
    plain, plain_log = rep.final_repair(noisy(), ctx, params, 0.01, 256, 0, 1)
    model = noisy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    verdicts = iter([True] + [holds_after] * 50)  # the input passes; then every epoch holds or not
    monkeypatch.setattr(rep, "is_forgotten", lambda row: (next(verdicts), ""))
    out, log = rep.final_repair(model, ctx, params, 0.01, 256, 0, 1, checks=p.audit.gate)
    assert log["erasure_checks_kept"] and len(log["epochs"]) == len(plain_log["epochs"]) == 3
    assert all(torch.equal(theta0[k], v) for k, v in base.state_dict().items())  # theta_0 untouched
    assert all(e["erasure_checks_hold"] is holds_after for e in log["epochs"])
    if holds_after:  # every epoch keeps the checks: the same model as a repair without them
        assert all(torch.equal(plain.state_dict()[k], v) for k, v in out.state_dict().items())
        assert log["end_retain_valid_recall@20"] == plain_log["end_retain_valid_recall@20"]
    else:  # none does: the input comes back, whatever utility the epochs reached
        assert all(torch.equal(before[k], v) for k, v in out.state_dict().items())
        assert log["end_retain_valid_recall@20"] == log["start_retain_valid_recall@20"]


def test_retain_checks_rank_a_fixed_sample_once_there_are_more_users_than_retain_users(world):
    """unlearn.stop.retain_users: the stop rule's and the final repair's retain checks rank
    that many retained users (the same ones on every call) once there are more; all below it."""
    from tru.unlearning.probes import retain_sample
    from tru.unlearning.repair import final_repair

    p, prior, base = world
    ctx = user_batch(prior, base, list(range(0, 80, 10)))
    shadow = retain_eval(ctx.data, "shadow")
    assert retain_sample(shadow, len(shadow.users), 1) is shadow and retain_sample(shadow, 0, 1) is shadow
    few = retain_sample(shadow, 20, ctx.seed)
    again = retain_sample(shadow, 20, ctx.seed)
    assert len(few.users) == 20 and np.array_equal(few.users, again.users)
    at = {u: j for j, u in enumerate(shadow.users)}
    for u, pos, exc in zip(few.users, few.positives, few.exclude, strict=True):  # rows stay with their user
        assert np.array_equal(pos, shadow.positives[at[u]]) and np.array_equal(exc, shadow.exclude[at[u]])

    up = p.unlearn.model_copy(update={"stop": p.unlearn.stop.model_copy(update={"retain_users": 20})})
    result = run_method("tru", ctx, p.model_copy(update={"unlearn": up}))
    assert ctx.retain_users == 20 and len(ctx.probes[1].users) == 20 and len(ctx.residue_users) == 20
    assert result.log["base_retain_shadow_recall@20"] == rank_metrics_of(base, few)["recall@20"]
    whole = rank_metrics_of(base, shadow)["recall@20"]
    _, log = final_repair(result.model, ctx, p.repair, 0.01, 256, 0, 1)
    valid = retain_sample(retain_eval(ctx.data, "valid"), 20, ctx.seed)
    assert log["base_retain_valid_recall@20"] == rank_metrics_of(base, valid)["recall@20"]

    fresh = user_batch(prior, base, list(range(0, 80, 10)))  # the default: more than these users, so all
    result = run_method("tru", fresh, p)
    assert len(fresh.probes[1].users) == len(shadow.users)
    assert result.log["base_retain_shadow_recall@20"] == whole


def test_a_loop_that_never_meets_its_stop_rule_hands_over_its_state_failing_fewest_checks(world, monkeypatch):
    """unlearn.tru.keep_best: of the state before the first reverse epoch and each epoch's, TRU
    hands over the one failing fewest of the stop rule's checks, the latest of those; the last
    epoch's when nothing earlier failed fewer, and always the last with keep_best off."""
    import tru.unlearning.reverse_repair as rr

    monkeypatch.setattr(rr, "is_forgotten", lambda row, evidence=False: (False, ""))  # the rule is never met
    p, prior, base = world
    ctx = user_batch(prior, base, list(range(0, 80, 10)))

    def run(passing: set[int], epochs: int = 3, keep: bool = True):
        # the states that pass every check: 0 is the one the reverse epochs start from
        monkeypatch.setattr(rr, "probe_failures", lambda row, *a: [] if row.get("epoch", 0) in passing else ["retain"])
        q = _stop_rule(p, 0.0, 0.03, keep_best=keep)
        q = q.model_copy(update={"unlearn": q.unlearn.model_copy(update={"max_epochs": epochs})})
        return run_method("tru", ctx, q)

    def same(a, b) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))

    after_one = run(set(), epochs=1, keep=False)
    kept = run({1})
    assert len(kept.log["epochs"]) == 3 and same(kept, after_one)
    assert kept.log["kept_state"] == {"epoch": 1, "failed": [], "last_epoch_failed": ["retain"]}
    assert same(run({1, 2}, epochs=2), run(set(), epochs=2, keep=False))  # the latest of the best
    last = run({1, 2, 3})
    assert "kept_state" not in last.log and same(last, run(set(), keep=False))
    assert same(run({1}, keep=False), run(set(), keep=False))
    # the state the epochs start from: what the pre-check would hand over had it held
    start = run({0})
    assert start.log["kept_state"]["epoch"] == 0
    monkeypatch.setattr(rr, "_stop_reason", lambda row, *a, **k: None if "epoch" in row else "held")
    held = run(set())
    assert held.log["epochs"] == [] and same(start, held)
    assert not same(start, after_one)  # an epoch moved the model: the start state is not the first epoch's


def test_a_state_fails_none_of_the_stop_rules_conditions_exactly_when_the_rule_holds(params):
    """probe_failures counts what keep_best weighs: the erasure checks as the stop rule reads
    them (with evidence: only with power, else the top-20 comparison) and retain utility. A
    state whose forgotten pairs still sit far above the shadow pairs' line, with no check that
    has power, fails the erasure condition even though no check fails."""
    from tru.unlearning.reverse_repair import _stop_reason, probe_failures

    stop = params.unlearn.stop
    base = 0.40
    rows = []
    for forget in (0.2, 0.54):
        for retain in (0.30, 0.39):
            for auc, power in ((0.9, True), (0.5, True), (0.5, False)):
                rows.append(
                    {
                        "forget_recall@20": forget,
                        "retain_shadow_recall@20": retain,
                        "membership_auc": auc,
                        "membership_threshold": 0.6,
                        "residue_flagged": None,
                        "membership_power": power,
                        "residue_power": False,
                    }
                )
    for evidence in (False, True):
        for row in rows:
            failed = probe_failures(row, stop, base, evidence)
            assert (_stop_reason(row, stop, base, evidence) is not None) == (failed == [])
    unreversed = {**rows[-1], "forget_recall@20": 0.54, "retain_shadow_recall@20": 0.39}  # no power, above the line
    assert probe_failures(unreversed, stop, base, evidence=True) == ["erasure"]
    assert probe_failures(unreversed, stop, base, evidence=False) == []  # the membership test passes
    assert probe_failures({**unreversed, "retain_shadow_recall@20": 0.30}, stop, base, True) == ["erasure", "retain"]
