"""Reverse-repair and TRU: epochs of a reverse pass over (a slice of) D_f and a repair pass
over a neighbourhood of D_r, until the stop rule holds.

- reverse_repair: the uniform MMRecUn-style protocol (reverse BPR on D_f, repair on D_r);
- tru: the same loop with the ranking gate, branch-wise scaling and capacity-aware
  selection, each switchable (params `unlearn.tru`), the item refit before the first epoch
  and the stop rule checked before it.

Both run after the exact erasure and graph rebuild every approximate method starts from
(tru/unlearning/steps.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np
import torch

from tru.config import Params
from tru.data.dataset import group_by_user
from tru.models.base import Recommender
from tru.train import NegativeSampler, seed_everything
from tru.unlearning.energy import gradient_energies, reverse_bpr_from
from tru.unlearning.mechanisms import (
    branch_scales,
    exclusion_mask,
    gate_penalty,
    ranking_gate,
    select_modules,
    uniform_scales,
)
from tru.unlearning.probes import rank_metrics_of
from tru.unlearning.registry import UnlearnContext, UnlearnResult, register_method
from tru.unlearning.steps import (
    erased_row_guard,
    gradients_only_for,
    is_forgotten,
    neighbourhood_sample,
    original_power,
    prepare,
    probe_metrics,
    repair_pass,
)


def original_users(ctx: UnlearnContext) -> tuple[torch.Tensor, torch.Tensor] | None:
    """theta_0's final user representations and the mask of this batch's deleted users (None when
    the batch deletes no user)."""
    if len(ctx.new_users) == 0:
        return None
    with torch.no_grad():
        ref = ctx.base.embeddings()[0].detach().clone()
    deleted = torch.zeros(ref.shape[0], dtype=torch.bool)
    deleted[torch.as_tensor(ctx.new_users)] = True
    return ref, deleted


class ForgetSchedule:
    """Which forgotten pairs each reverse pass visits. All of D_f, freshly shuffled, while it
    holds at most `size` pairs; otherwise the next `size` pairs of a shuffled D_f, reshuffled
    once every pair has been visited, so that a large deletion takes as many reverse steps per
    epoch as a small one and the stop rule is checked after as many steps. (ML-1M, MGCN, 5% of
    users: 30,054 forgotten pairs, 12x ML-100k's; a whole pass per epoch was 117 reverse steps
    between two checks, and ten of them left 54% of retain utility.)"""

    def __init__(self, n: int, size: int, rng: np.random.Generator):  # n: |D_f|; size: pairs per pass
        self.n, self.size, self.rng = n, size, rng
        self._order, self._at = np.zeros(0, np.int64), 0

    def next(self) -> np.ndarray:
        """Indices into D_f of the next reverse pass."""
        if self.n <= self.size:
            return self.rng.permutation(self.n)
        out = []
        want = self.size
        while want:
            if self._at == len(self._order):
                self._order, self._at = self.rng.permutation(self.n), 0
            take = self._order[self._at : self._at + want]
            self._at += len(take)
            want -= len(take)
            out.append(take)
        return np.concatenate(out)


@register_method("reverse_repair")
def reverse_repair(ctx: UnlearnContext, params: Params) -> UnlearnResult:
    """The uniform reverse-repair loop, no TRU mechanism; the log holds one row per epoch."""
    return _reverse_repair_loop(ctx, params, mechanisms=None)


@register_method("tru")
def tru(ctx: UnlearnContext, params: Params) -> UnlearnResult:
    """The reverse-repair loop with the mechanisms of `unlearn.tru`; the log holds one row per
    epoch (energies, scales, selected modules, gate) and the stop reason."""
    return _reverse_repair_loop(ctx, params, mechanisms=params.unlearn.tru)


def _stop_reason(row: dict, stop, base_retain: float, evidence: bool = False) -> str | None:
    """Why the loop stops at this probe row (forgotten, and retain Recall@20 on shadow pairs
    within `stop.retain_tolerance` of theta_0's), or None to go on. `evidence`: see is_forgotten."""
    forgotten, why = is_forgotten(row, evidence)
    if forgotten and row["retain_shadow_recall@20"] >= (1 - stop.retain_tolerance) * base_retain:
        return f"{why}; retain utility within tolerance"
    return None


def probe_failures(row: dict, stop, base_retain: float, evidence: bool = False) -> list[str]:
    """The stop rule's conditions this probe row fails (none: the rule holds, _stop_reason):
    `erasure` (is_forgotten: the erasure checks, counted only with power where `evidence`, else
    the top-20 comparison) and `retain` (retained users' Recall@20 on shadow pairs more than
    `stop.retain_tolerance` below theta_0's)."""
    failed = []
    if not is_forgotten(row, evidence)[0]:
        failed.append("erasure")
    if row["retain_shadow_recall@20"] < (1 - stop.retain_tolerance) * base_retain:
        failed.append("retain")
    return failed


class BestState:
    """The state a loop that ends without meeting its stop rule hands over: of the state the
    reverse epochs started from and each epoch's, the one failing fewest of the rule's two
    conditions (probe_failures), the latest of those. The last epoch's is kept unless an earlier
    state failed fewer: reversing further is what the rule asked for, but not at the price of a
    condition an earlier state met (ML-100k MIG-GT, a nightly batch: the state before the first
    epoch kept retain utility within tolerance, none of five reverse epochs at a growing step
    did, the last three failed the erasure condition too, and the gate refused the night)."""

    def __init__(self, model: Recommender, row: dict, stop, base_retain: float, evidence: bool):
        self.stop, self.base_retain, self.evidence = stop, base_retain, evidence
        self.failed, self.epoch, self.state = self.failures(row), 0, self._copy(model)  # `row`: the start's

    def failures(self, row: dict) -> list[str]:
        return probe_failures(row, self.stop, self.base_retain, self.evidence)

    @staticmethod
    def _copy(model: Recommender) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def offer(self, model: Recommender, row: dict, epoch: int) -> None:
        """The state after `epoch`, its probe row `row`."""
        failed = self.failures(row)
        if len(failed) <= len(self.failed):
            self.failed, self.epoch, self.state = failed, epoch, self._copy(model)

    def restore(self, model: Recommender, last: dict) -> dict | None:
        """Load the kept state into `model` where it is not the last epoch's (`last`: that
        epoch's probe row); what was kept and why, for the log, else None."""
        if self.epoch == last["epoch"]:
            return None
        model.load_state_dict(self.state)
        return {"epoch": self.epoch, "failed": self.failed, "last_epoch_failed": self.failures(last)}


def _refit_rows(
    model: Recommender,
    tables: list[str],
    rows: np.ndarray,
    pairs: np.ndarray,
    steps: int,
    lr: float,
    sampler: NegativeSampler,
    rng: np.random.Generator,
    batch_size: int,
    loss_fn=None,
) -> None:
    """`steps` Adam steps of the training loss on `pairs` that move only `rows` of `tables`
    (user tables indexed by user, item tables by item), everything else fixed. `loss_fn`: the
    backbone's loss for exactly such a fit (Recommender.user_rows_loss), else `model.loss`."""
    loss_fn = loss_fn or model.loss
    named = dict(model.named_parameters())
    params = [named[t] for t in tables]
    mask = torch.zeros(params[0].shape[0], 1, dtype=torch.bool)
    mask[torch.as_tensor(rows)] = True
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    with gradients_only_for(model, tables):
        for _ in range(steps):
            b = pairs[rng.choice(len(pairs), size=min(batch_size, len(pairs)), replace=False)]
            u, i = torch.as_tensor(b[:, 0]), torch.as_tensor(b[:, 1])
            neg = torch.as_tensor(sampler.sample(b[:, 0], rng))
            model.zero_grad(set_to_none=True)
            loss, _ = loss_fn(u, i, neg)
            loss.backward()
            for p in params:
                assert p.grad is not None  # every own-row table is in the loss
                p.grad = torch.where(mask, p.grad, torch.zeros_like(p.grad))
            opt.step()
    model.zero_grad(set_to_none=True)


def refit_items(
    model: Recommender,
    ctx: UnlearnContext,
    share: float,
    steps: int,
    lr: float,
    sampler: NegativeSampler,
    rng: np.random.Generator,
    batch_size: int,
    reinit: bool = False,
) -> dict:
    """Re-fit the own rows (`model.item_tables()`) of items that lost at least `share` of
    their interactions to the users the batch deletes, on the interactions they kept,
    everything else fixed.

    Such an item's row was trained beside the neighbours the batch removed: with the graph
    rebuilt from the retain set, it lands below where a retrain puts it (ML-100k, MGCN: after
    the exact step alone the backdoor canary's target is served to 0.1% of normal users, where
    a retrain serves it to 2-6%). How far the re-fit moves such a row is steps x lr: the
    target's attack success rises steeply with it, and the step is chosen on development
    seeds with `tru bench sensitivity --knobs refit_steps,refit_lr` (its report has the
    figures).

    Only losses to deleted users count: an item that lost a few of its interactions to
    interaction requests kept its neighbours, and re-fitting it on the few pairs it has left
    over-fits it (ML-100k, MGCN, 5% of interactions, seed 1: 77 such items re-fitted, 1-3 of
    them then ranked above every untouched item's peers, and the gate refused the batch).

    With `reinit` the rows are first re-drawn from the initialisation (`erase_rows`), as a
    retrain starts them: warm-started from a pushed item's trained row, the re-fit fits its
    remaining real interactions and keeps much of the push (a cold bandwagon target stayed at
    median rank 369 of 800 where a retrain put it at 722)."""
    tables = model.item_tables()
    if not tables or not len(ctx.forget) or steps <= 0:
        return {"items": 0, "steps": 0}
    items = ctx.items_losing(share, to_deleted_users=True)
    pairs = ctx.data.train[np.isin(ctx.data.train[:, 1], items)]
    if not len(items) or not len(pairs):
        return {"items": 0, "steps": 0}
    if reinit:
        model.erase_rows(np.zeros(0, np.int64), items, torch.Generator().manual_seed(ctx.seed + 1))
    local = model.item_rows_loss(items)  # everything but these rows is fixed from here on
    _refit_rows(model, tables, items, pairs, steps, lr, sampler, rng, batch_size, loss_fn=local)
    return {
        "items": int(len(items)),
        "pairs": int(len(pairs)),
        "steps": steps,
        "share": share,
        "reinit": reinit,
        "local": local is not None,
    }


def refit_users(
    model: Recommender,
    ctx: UnlearnContext,
    steps: int,
    lr: float,
    sampler: NegativeSampler,
    rng: np.random.Generator,
    batch_size: int,
    approximate: bool = False,
    item_users: bool = False,
) -> dict:
    """Re-draw the own rows of the users who lost pairs to interaction requests (they stay,
    and so do the items: `ctx.pair_users`) from the initialisation, as a retrain starts them,
    and fit them on the pairs they kept, everything else fixed. With `item_users`, on a
    backbone whose items own no row (`item_tables()` empty: MIG-GT scores a deleted item from
    its features), also the users who lost a pair to a deleted item: their rows were fitted to
    rank it, and it is still scored, where a backbone with item rows erases the item's.

    A user's own row is where a trained pair is remembered most: it was fitted to rank the
    user's items, the forgotten ones among them. Reverse epochs pushed the forgotten pairs
    down without taking that memory out (ML-100k, MGCN, 5% of interactions, seeds 1-3: ten
    epochs left the membership test at AUC 0.540-0.552 against shadow pairs, threshold 0.532,
    and cost 10-12% of retained users' Recall@20 on shadow pairs); a row that never saw the
    pair cannot remember it. Measured there (seed 1, development): 200 steps at lr 0.005 gave
    AUC 0.524, forget Recall@20 0.385 (retrain 0.390), the gate's PASS."""
    users = ctx.pair_users(item_users=item_users and not model.item_tables())
    if not len(users) or steps <= 0:
        return {"users": 0, "steps": 0}
    pairs = ctx.data.train[np.isin(ctx.data.train[:, 0], users)]
    tables = model.erase_rows(users, np.zeros(0, np.int64), torch.Generator().manual_seed(ctx.seed + 2))
    if not len(pairs):
        return {"users": int(len(users)), "pairs": 0, "steps": 0}
    local = model.user_rows_loss(users)  # everything but these rows is fixed from here on
    # unlearn.tru.user_refit_approximate: the backbone's approximation where it has no exact shortcut
    approximated = local is None and approximate
    if approximated:
        local = model.user_rows_loss(users, approximate=True)
    _refit_rows(model, tables, users, pairs, steps, lr, sampler, rng, batch_size, loss_fn=local)
    out = {"users": int(len(users)), "pairs": int(len(pairs)), "steps": steps, "local": local is not None}
    return out | ({"approximate": True} if approximated and local is not None else {})


def reverse_lr(up, mechanisms=None) -> float:
    """The reverse step size: TRU's own (`unlearn.tru.lr`, with `mechanisms` = unlearn.tru) where
    set, else `unlearn.lr`, MMRecUn's and the other baselines' (`up`: the unlearn section)."""
    return mechanisms.lr if mechanisms is not None and mechanisms.lr is not None else up.lr


def _module_branch(model: Recommender) -> dict[str, str]:
    """The branch each selection module belongs to (that of its first parameter)."""
    owner = {n: b for b, names in model.branches().items() for n in names}
    return {m: owner[names[0]] for m, names in model.selection_modules().items()}


@contextlib.contextmanager
def _timed(log: dict, phase: str) -> Iterator[None]:
    """Record the block's wall-clock seconds as log[f"{phase}_seconds"]: where a night's seconds
    go, phase by phase. split_timings moves every *_seconds key to the batch's
    timings/update.json, so the log itself stays byte-identical across runs."""
    t = time.perf_counter()
    yield
    log[f"{phase}_seconds"] = time.perf_counter() - t


def _reverse_repair_loop(ctx: UnlearnContext, params: Params, mechanisms) -> UnlearnResult:
    up = params.unlearn
    seed_everything(ctx.seed, params.train.threads)
    phases: dict = {}
    with _timed(phases, "exact_step"):
        model, log = prepare(ctx, params)
    log |= phases
    guard = erased_row_guard(model, ctx.base)
    original = original_users(ctx) if params.unlearn.exact_erasure else None
    log["method"] = "tru" if mechanisms is not None else "reverse_repair"
    if mechanisms is not None:
        log["mechanisms"] = {"gate": mechanisms.gate, "scaling": mechanisms.scaling, "selection": mechanisms.selection}
    rng = np.random.default_rng(ctx.seed)
    modules = model.selection_modules()
    named = dict(model.named_parameters())
    module_branch = _module_branch(model)
    groups = [{"params": [named[n] for n in names], "name": m} for m, names in modules.items()]
    lr = reverse_lr(up, mechanisms)
    opt_rev = torch.optim.Adam(groups, lr=lr)
    opt_rep = torch.optim.Adam(model.parameters(), lr=up.repair_lr)
    prior_sampler = NegativeSampler(ctx.prior.train, model.n_items, ctx.data.candidates)
    retain_sampler = NegativeSampler(ctx.data.train, model.n_items, ctx.data.candidates)
    fusion = set(model.branches().get("fusion", []))
    per_user_retained = group_by_user(ctx.data.train, ctx.data.n_users)
    checks = params.audit.gate  # the gate's erasure checks: the stop rule's
    with _timed(log, "retain_reference"):
        base_retain = rank_metrics_of(ctx.base, ctx.probes[1])["recall@20"]
        log["base_retain_shadow_recall@20"] = base_retain
        if mechanisms is not None and mechanisms.retain_from_chain_start and ctx.chain_start is not None:
            # the chain's start too, on the same shadow pairs: a night may lose up to the tolerance
            # against its input, and nights of such losses add up (ML-1M, docs/lifecycle.md)
            start_retain = rank_metrics_of(ctx.chain_start, ctx.probes[1])["recall@20"]
            log["chain_start_retain_shadow_recall@20"] = start_retain
            base_retain = max(base_retain, start_retain)
    log["retain_reference_shadow_recall@20"] = base_retain
    with _timed(log, "probe_before"):
        log["probe_before"] = probe_metrics(model, ctx, checks)
    if mechanisms is not None and mechanisms.user_refit_steps > 0:
        # first the users, so that the items re-fit below against rows that never saw a forgotten pair
        with _timed(log, "user_refit"):
            log["user_refit"] = refit_users(
                model,
                ctx,
                mechanisms.user_refit_steps,
                mechanisms.user_refit_lr,
                retain_sampler,
                rng,
                up.repair_batch_size,
                approximate=mechanisms.user_refit_approximate,
                item_users=mechanisms.user_refit_item_users,
            )
    if mechanisms is not None and mechanisms.refit_share > 0:
        with _timed(log, "refit"):
            log["refit"] = refit_items(
                model,
                ctx,
                mechanisms.refit_share,
                mechanisms.refit_steps,
                mechanisms.refit_lr,
                retain_sampler,
                rng,
                up.repair_batch_size,
                reinit=mechanisms.refit_from == "reinit",
            )
    if mechanisms is not None and mechanisms.check_before_reverse:
        # reverse only where the deletion's influence survives: the stop rule, checked on the model
        # the reverse epochs would start from (after the exact step, the rebuilt graphs and the refit)
        refitted = log.get("refit", {}).get("steps") or log.get("user_refit", {}).get("steps")
        with _timed(log, "probe_start"):
            start = probe_metrics(model, ctx, checks) if refitted else log["probe_before"]
            # a check passes as evidence only where it has power (theta_0 fails it): skipping every
            # reverse epoch claims that the exact step removed the deletion's influence
            start = log["probe_start"] = {**start, **original_power(ctx, checks)}
        stop = _stop_reason(start, up.stop, base_retain, evidence=True)
        if stop:
            log["stop"] = f"before the first reverse epoch: {stop}"
            log["reverse_sample"] = up.reverse_sample
            log["epochs"] = []
            model.eval()
            return UnlearnResult(model, log)
    # TRU's passes: at most 1/reverse_split of D_f each, so that a small deletion is not reversed
    # in one or two whole passes between checks of the stop rule
    pass_size = up.reverse_sample
    if mechanisms is not None and mechanisms.reverse_split > 1 and len(ctx.forget):
        pass_size = min(pass_size, -(-len(ctx.forget) // mechanisms.reverse_split))
    schedule = ForgetSchedule(len(ctx.forget), pass_size, rng)
    log["reverse_sample"] = pass_size
    # TRU asks for evidence throughout: a passing check stops its loop only where it has power
    # (theta_0 fails it), as before its first reverse epoch; MMRecUn's loop stops on any pass
    evidence = mechanisms is not None
    power = original_power(ctx, checks) if evidence else {}
    epochs: list[dict] = []
    # TRU's step grows where a reverse pass moved nothing: Adam moves each parameter about lr per
    # step, and a pass takes |pass| / forget_batch_size steps, so a nightly batch of tens of pairs
    # gets one step per pass where the deletions the step was chosen on got several
    growth, growth_max = 1.0, mechanisms.step_growth_max if mechanisms is not None else 1.0
    last_forget = (log.get("probe_start") or log["probe_before"])["forget_recall@20"]
    best = None
    if mechanisms is not None and mechanisms.keep_best:
        refitted = log.get("refit", {}).get("steps") or log.get("user_refit", {}).get("steps")
        start = log.get("probe_start") or (probe_metrics(model, ctx, checks) if refitted else log["probe_before"])
        best = BestState(model, {**start, **power}, up.stop, base_retain, evidence)

    def finish_epoch(row: dict, e0: float) -> bool:
        """The epoch's repair pass on (a neighbourhood of) D_r, its probe and the stop rule;
        True when the loop stops."""
        repair_pairs = neighbourhood_sample(ctx, up.repair_sample, rng)
        row["repair_loss"] = repair_pass(model, repair_pairs, retain_sampler, opt_rep, up.repair_batch_size, rng)
        guard()
        row["repair_pairs"] = int(len(repair_pairs))
        row.update(probe_metrics(model, ctx, checks))
        row.update(power)
        row["seconds"] = time.perf_counter() - e0
        epochs.append(row)
        stop = _stop_reason(row, up.stop, base_retain, evidence=evidence)
        if stop:
            row["stop"] = stop
        elif best is not None:
            best.offer(model, row, row["epoch"])
        return bool(stop)

    for epoch in range(1, up.max_epochs + 1):
        e0 = time.perf_counter()
        row: dict = {"epoch": epoch}
        # once the erasure checks hold, reversing further only forgets more than a retrain would:
        # the epoch repairs (until retain utility is back within tolerance), it does not reverse
        last = epochs[-1] if epochs else log.get("probe_start")
        if last is not None and is_forgotten(last, evidence=evidence)[0]:
            row["reverse"] = "skipped: the erasure checks hold; repair only"
            row["reverse_pairs"] = 0
            if finish_epoch(row, e0):
                break
            last_forget = row["forget_recall@20"]
            continue
        scales = {b: 1.0 for b in model.branches()}
        selected = list(modules)
        if mechanisms is not None and (mechanisms.scaling or mechanisms.selection) and len(ctx.forget):
            energies = gradient_energies(
                model, ctx.forget, ctx.data.train, retain_sampler, rng, mechanisms.probe_size, original
            )
            branch_e = energies.group(model.branches())
            module_e = energies.group(modules)
            row["branch_energy"] = branch_e
            if mechanisms.scaling:
                scales = branch_scales(branch_e, mechanisms.scale_gamma, mechanisms.scale_min, mechanisms.scale_max)
                if mechanisms.scale_uniform:
                    scales = uniform_scales(scales, branch_e)
            if mechanisms.selection:
                selected, coverage = select_modules(module_e, mechanisms.capacity_rho)
                row["capacity_covered"] = coverage
        row["branch_scales"] = scales
        row["selected_modules"] = selected
        if growth_max > 1:
            row["step_growth"] = growth
        for group in opt_rev.param_groups:
            group["lr"] = lr * growth * scales[module_branch[group["name"]]] if group["name"] in selected else 0.0

        # reverse pass over D_f (a slice of it when it holds more than reverse_sample pairs)
        model.train()
        order = schedule.next()
        rev_total, gate_total, active, gated_pairs = 0.0, 0.0, 0, 0
        for s in range(0, len(order), up.forget_batch_size):
            b = ctx.forget[order[s : s + up.forget_batch_size]]
            u, i = torch.as_tensor(b[:, 0]), torch.as_tensor(b[:, 1])
            neg = torch.as_tensor(prior_sampler.sample(b[:, 0], rng))
            opt_rev.zero_grad(set_to_none=True)
            u_emb, i_emb = model.embeddings()
            if original is not None:  # deleted users: theta_0's representation (see reverse_bpr_from)
                u_emb = torch.where(original[1].unsqueeze(1), original[0], u_emb)
            loss = reverse_bpr_from(u_emb, i_emb, u, i, neg)
            gated = mechanisms is not None and mechanisms.gate
            if gated:
                users_u = torch.unique(u).numpy()
                mask = exclusion_mask(users_u, per_user_retained, ctx.data.deleted_items, model.n_items)
                gate, margin, in_top = ranking_gate(
                    u_emb, i_emb, u, i, mask, mechanisms.gate_k, mechanisms.gate_temperature
                )
                penalty = gate_penalty(gate, margin, mechanisms.gate_lambda)
            if gated and mechanisms.gate_scope == "selected":
                (loss + penalty).backward()  # the push reaches every selected module, scaled like the reverse step
            else:
                loss.backward(retain_graph=gated)
            if gated:
                if mechanisms.gate_scope == "fusion" and float(gate.sum()) > 0:
                    fusion_params = [named[n] for n in fusion]
                    grads = torch.autograd.grad(penalty, fusion_params, allow_unused=True)
                    for p, g in zip(fusion_params, grads):
                        if g is not None:
                            p.grad = g if p.grad is None else p.grad + g
                gate_total += float(penalty.detach())
                active += int(in_top.sum())
                gated_pairs += len(b)
            rev_total += float(loss.detach())
            opt_rev.step()
            guard()
        row["reverse_loss"] = rev_total
        row["reverse_pairs"] = int(len(order))
        if mechanisms is not None and mechanisms.gate:
            row["gate"] = {"pairs_in_top_k": active, "pairs": gated_pairs, "penalty": gate_total}

        if finish_epoch(row, e0):
            break
        # the pass left the forgotten pairs where they were, above the line shadow pairs reach
        # (the top-20 fallback's): a larger step next; at or below that line a failing check is
        # the membership test's, which a larger step does not serve
        f = row["forget_recall@20"]
        if last_forget is not None and f >= last_forget and f > row["retain_shadow_recall@20"]:
            growth = min(2 * growth, growth_max)
        last_forget = f
    log["epochs"] = epochs
    if best is not None and epochs and "stop" not in epochs[-1]:
        kept = best.restore(model, epochs[-1])
        if kept:
            log["kept_state"] = kept
    model.eval()
    return UnlearnResult(model, log)
