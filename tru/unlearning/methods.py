"""Unlearning methods, registered by name. Each takes an UnlearnContext and returns an
UnlearnResult (model, log, seconds), so the stage, the benchmark and the report treat them
alike.

- retrain: from scratch on the retain set with the training recipe (the exact reference);
- gradient_ascent: the naive baseline, ascent on the training loss of the forget set;
- reverse_repair: the uniform MMRecUn-style protocol (reverse BPR on D_f, repair on D_r);
- tru: reverse-repair with the ranking gate, branch-wise scaling and capacity-aware
  selection, each switchable (params `unlearn.tru`).
- multidelete: MultiDelete's decoupling and retention losses, adapted (tru/unlearning/multidelete.py).

Every approximate method first erases exactly what is private to deleted entities
(`unlearn.exact_erasure`) and rebuilds the graphs from the retain set (`unlearn.rebuild_graphs`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from tru.config import Params
from tru.data.dataset import InteractionData, group_by_user
from tru.models import build_backbone
from tru.models.base import Recommender
from tru.train import NegativeSampler, fit, seed_everything
from tru.unlearning.energy import gradient_energies, reverse_bpr_from
from tru.unlearning.mechanisms import branch_scales, exclusion_mask, gate_penalty, ranking_gate, select_modules
from tru.unlearning.probes import forget_eval, membership_auc, rank_metrics_of, retain_eval

METHODS: dict[str, Callable[["UnlearnContext", Params], "UnlearnResult"]] = {}


def register_method(name: str):
    def deco(fn):
        if name in METHODS:
            raise ValueError(f"method {name!r} registered twice")
        METHODS[name] = fn
        return fn

    return deco


@dataclass
class UnlearnContext:
    base: Recommender            # theta_0 (left untouched; methods work on a copy)
    prior: InteractionData       # the data theta_0 was trained on (its train = D_r + D_f)
    data: InteractionData        # after the batch: train = D_r; valid/test of retained users
    forget: np.ndarray           # D_f
    heldout: np.ndarray          # held-out rows of deleted users (non-members for the audits)
    new_users: np.ndarray        # users deleted by this batch
    new_items: np.ndarray        # items deleted by this batch
    seed: int
    # where exact methods keep resume snapshots of their training (fit's, every
    # train.checkpoint_every epochs): a killed run continues to the same model; None: no
    # snapshots. The caller clears the folder once the result is saved.
    resume: Path | None = None

    def resume_folder(self, name: str) -> Path | None:
        return None if self.resume is None else Path(self.resume) / name

    @property
    def non_members(self) -> np.ndarray:
        """Held-out interactions of the affected users: the deleted users' valid/test rows and
        the retained affected users' valid/test rows (interaction- and item-level batches)."""
        affected = np.unique(self.forget[:, 0]) if len(self.forget) else np.zeros(0, np.int64)
        rows = [self.heldout.reshape(-1, 2)]
        for split in ("valid", "test"):
            p = self.data.pairs(split)
            rows.append(p[np.isin(p[:, 0], affected)])
        return np.unique(np.concatenate(rows), axis=0) if sum(len(r) for r in rows) else np.zeros((0, 2), np.int64)


    def items_losing(self, share: float) -> np.ndarray:
        """Items still in the catalogue that lost at least `share` of their training
        interactions to this batch (and at least one)."""
        n = self.data.n_items
        before = np.bincount(self.prior.train[:, 1], minlength=n)
        removed = np.bincount(self.forget[:, 1], minlength=n) if len(self.forget) else np.zeros(n, np.int64)
        lost = np.divide(removed, before, out=np.zeros(n), where=before > 0)
        return np.setdiff1d(np.flatnonzero((removed > 0) & (lost >= share)), self.data.deleted_items)

    @cached_property
    def probes(self) -> tuple:
        """What `probe_metrics` ranks after every epoch (it depends on the batch only, so it is
        built once): the forget and retain-validation rankings' ground truth and exclusions, and
        the membership pairs."""
        return forget_eval(self.data, self.forget), retain_eval(self.data, "valid"), *self.membership_pairs()

    def membership_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Members (forgotten pairs) and non-members (held-out pairs) of the same users only:
        comparing across users would measure how well the model knows the users, not whether
        it still remembers these interactions."""
        non = self.non_members
        if len(self.forget) == 0 or len(non) == 0:
            return self.forget[:0], non[:0]
        # a deleted item is gone from the catalogue: (u, deleted item) is not a membership
        # question any model could answer differently (every model, retrain included, scores a
        # re-drawn item row alike), and would make every model look leaky
        forget = self.forget[~np.isin(self.forget[:, 1], self.data.deleted_items)]
        non = non[~np.isin(non[:, 1], self.data.deleted_items)]
        users = np.intersect1d(forget[:, 0], non[:, 0])
        return forget[np.isin(forget[:, 0], users)], non[np.isin(non[:, 0], users)]


@dataclass
class UnlearnResult:
    model: Recommender
    log: dict = field(default_factory=dict)
    seconds: float = 0.0


def run_method(name: str, ctx: UnlearnContext, params: Params) -> UnlearnResult:
    if name not in METHODS:
        from tru.errors import ConfigError

        raise ConfigError(f"unknown unlearning method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    # torch.optim imports torch._dynamo on the first optimiser a process builds (~3 s on a 2-core
    # host): done before the clock starts, so that no method's seconds carry it (in a fresh
    # benchmark process it was a fifth of TRU's interaction-level erasure); stages that only
    # read a context (evaluate, audit) never pay it
    import torch._dynamo  # noqa: F401

    t0 = time.perf_counter()
    result = METHODS[name](ctx, params)
    # work that belongs to base training, not to the erasure (UltraRE's ensemble of theta_0's
    # data) is left out; training seconds a resumed run's snapshots recorded (earlier processes) count
    result.seconds = (time.perf_counter() - t0 - float(result.log.get("setup_seconds", 0.0))
                      + float(result.log.get("resumed_seconds", 0.0)))
    return result


# --------------------------------------------------------------------------- shared steps


def prepare(ctx: UnlearnContext, params: Params) -> tuple[Recommender, dict]:
    """A copy of theta_0 with private rows erased exactly and the graphs rebuilt from D_r."""
    model = copy.deepcopy(ctx.base)
    log: dict = {"exact_erasure": params.unlearn.exact_erasure, "rebuild_graphs": params.unlearn.rebuild_graphs}
    if params.unlearn.exact_erasure:
        gen = torch.Generator().manual_seed(ctx.seed)
        log["erased_parameters"] = model.erase_rows(ctx.new_users, ctx.new_items, gen)
        log["erased_rows"] = {"users": int(len(ctx.new_users)), "items": int(len(ctx.new_items))}
    if params.unlearn.rebuild_graphs:
        model.set_graph(ctx.data.train, ctx.data.active_items)
    else:
        model.set_graph(ctx.prior.train, ctx.prior.active_items)
    return model, log


def original_users(ctx: UnlearnContext) -> tuple[torch.Tensor, torch.Tensor] | None:
    """theta_0's final user representations and the mask of this batch's deleted users."""
    if len(ctx.new_users) == 0:
        return None
    with torch.no_grad():
        ref = ctx.base.embeddings()[0].detach().clone()
    deleted = torch.zeros(ref.shape[0], dtype=torch.bool)
    deleted[torch.as_tensor(ctx.new_users)] = True
    return ref, deleted


def erased_row_guard(model: Recommender, base: Recommender) -> Callable[[], None]:
    """After `prepare`: a function that puts back the rows the exact erasure reset. Called
    after every optimiser step, it keeps them where a retrain leaves them: an approximate step
    that moved a deleted user's fresh row away from its forgotten items would write
    "anti-memory" into it, which a membership attack reads as easily as memory."""
    ref = dict(base.named_parameters())
    guards = []
    for name, p in model.named_parameters():
        if p.dim() < 2:
            continue
        rows = (p.detach() != ref[name].detach()).any(dim=1)
        if rows.any():
            guards.append((p, rows, p.detach()[rows].clone()))

    def restore() -> None:
        with torch.no_grad():
            for p, rows, values in guards:
                p[rows] = values

    return restore


def neighbourhood_sample(ctx: UnlearnContext, size: int, rng: np.random.Generator) -> np.ndarray:
    """Retain pairs to repair on: those of affected users and target items first (where the
    deletion moved the model), topped up with a uniform sample, `size` at most."""
    train = ctx.data.train
    if size <= 0 or len(train) == 0:
        return train[:0]
    if len(ctx.forget):
        near = np.isin(train[:, 0], ctx.forget[:, 0]) | np.isin(train[:, 1], ctx.forget[:, 1])
    else:
        near = np.zeros(len(train), bool)
    idx_near = np.flatnonzero(near)
    if len(idx_near) >= size:
        return train[np.sort(rng.choice(idx_near, size=size, replace=False))]
    rest = np.flatnonzero(~near)
    extra = rng.choice(rest, size=min(len(rest), size - len(idx_near)), replace=False)
    return train[np.sort(np.concatenate([idx_near, extra]))]


class ForgetSchedule:
    """Which forgotten pairs each reverse pass visits. All of D_f, freshly shuffled, while it
    holds at most `size` pairs; otherwise the next `size` pairs of a shuffled D_f, reshuffled
    once every pair has been visited, so that a large deletion takes as many reverse steps per
    epoch as a small one and the stop rule is checked after as many steps. (ML-1M, MGCN, 5% of
    users: 30,054 forgotten pairs, 12x ML-100k's; a whole pass per epoch was 117 reverse steps
    between two checks, and ten of them left 54% of retain utility.)"""

    def __init__(self, n: int, size: int, rng: np.random.Generator):
        self.n, self.size, self.rng = n, size, rng
        self._order, self._at = np.zeros(0, np.int64), 0

    def next(self) -> np.ndarray:
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


def repair_pass(model: Recommender, pairs: np.ndarray, sampler: NegativeSampler, opt: torch.optim.Optimizer,
                batch_size: int, rng: np.random.Generator) -> float:
    model.train()
    order = rng.permutation(len(pairs))
    total, n = 0.0, 0
    for s in range(0, len(order), batch_size):
        b = pairs[order[s : s + batch_size]]
        u, i = torch.as_tensor(b[:, 0]), torch.as_tensor(b[:, 1])
        neg = torch.as_tensor(sampler.sample(b[:, 0], rng))
        loss, _ = model.loss(u, i, neg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach())
        n += 1
    return total / max(n, 1)


def probe_metrics(model: Recommender, ctx: UnlearnContext) -> dict:
    """Forget and retain-validation Recall@20 and the membership AUC, from one forward pass."""
    model.eval()
    forget_set, valid_set, members, non_members = ctx.probes
    score = model.score_fn()
    forget = rank_metrics_of(model, forget_set, score=score)
    valid = rank_metrics_of(model, valid_set, score=score)
    return {"forget_recall@20": forget["recall@20"], "retain_valid_recall@20": valid["recall@20"],
            "membership_auc": membership_auc(model, members, non_members, ctx.data, score=score)}


# ------------------------------------------------------------------------------ methods


@register_method("retrain")
def retrain(ctx: UnlearnContext, params: Params) -> UnlearnResult:
    seed_everything(params.seed, params.train.threads)
    model = build_backbone(params.model.backbone, getattr(params.model, params.model.backbone).model_dump(),
                           ctx.data.n_users, ctx.data.n_items, ctx.data.features)
    from tru.train import EvalSet

    valid = EvalSet.build(ctx.data.valid, ctx.data.train, ctx.data.n_users)
    res = fit(model, ctx.data.train, valid, params.train, params.seed, candidates=ctx.data.candidates, desc="retrain",
              resume=ctx.resume_folder("retrain"))
    return UnlearnResult(res.model, {"method": "retrain", "best_epoch": res.best_epoch, "epochs": res.history,
                                     "resumed_from_epoch": res.resumed_from, "resumed_seconds": res.resumed_seconds})


@register_method("gradient_ascent")
def gradient_ascent(ctx: UnlearnContext, params: Params) -> UnlearnResult:
    seed_everything(ctx.seed, params.train.threads)
    model, log = prepare(ctx, params)
    guard = erased_row_guard(model, ctx.base)
    rng = np.random.default_rng(ctx.seed)
    sampler = NegativeSampler(ctx.prior.train, model.n_items, ctx.data.candidates)
    opt = torch.optim.Adam(model.parameters(), lr=params.unlearn.lr)
    epochs = []
    for epoch in range(1, params.unlearn.ascent_epochs + 1):
        e0 = time.perf_counter()
        model.train()
        order = rng.permutation(len(ctx.forget))
        total = 0.0
        for s in range(0, len(order), params.unlearn.forget_batch_size):
            b = ctx.forget[order[s : s + params.unlearn.forget_batch_size]]
            loss, _ = model.loss(torch.as_tensor(b[:, 0]), torch.as_tensor(b[:, 1]),
                                 torch.as_tensor(sampler.sample(b[:, 0], rng)))
            opt.zero_grad(set_to_none=True)
            (-loss).backward()
            opt.step()
            guard()
            total += float(loss.detach())
        epochs.append({"epoch": epoch, "ascent_loss": total, "seconds": time.perf_counter() - e0, **probe_metrics(model, ctx)})
    log.update({"method": "gradient_ascent", "epochs": epochs})
    return UnlearnResult(model, log)


@register_method("reverse_repair")
def reverse_repair(ctx: UnlearnContext, params: Params) -> UnlearnResult:
    return _reverse_repair_loop(ctx, params, mechanisms=None)


@register_method("tru")
def tru(ctx: UnlearnContext, params: Params) -> UnlearnResult:
    return _reverse_repair_loop(ctx, params, mechanisms=params.unlearn.tru)


def _forgotten(row: dict, margin: float) -> tuple[bool, str]:
    """The stopping signal, without a retrain reference. Forgotten once the forgotten pairs no
    longer rank above held-out pairs of the same users (an AUC below 0.5 means they already
    rank lower: more epochs only overshoot). With no such pairs (an item-only batch), once the
    forgotten pairs are found in their users' top-20 no more often than the retained users'
    held-out items are in theirs: the deleted items rank like never-seen ones."""
    auc = row["membership_auc"]
    if auc is not None:
        return auc <= 0.5 + margin, "forgotten pairs rank no higher than held-out ones"
    return (row["forget_recall@20"] <= row["retain_valid_recall@20"],
            "forgotten pairs reach their users' top-20 no more often than held-out items")


def _stop_reason(row: dict, stop, base_valid: float) -> str | None:
    """Why the loop stops at this probe row (forgotten, and retain-validation Recall@20 within
    `stop.retain_tolerance` of theta_0's), or None to go on."""
    forgotten, why = _forgotten(row, stop.mia_auc_margin)
    if forgotten and row["retain_valid_recall@20"] >= (1 - stop.retain_tolerance) * base_valid:
        return f"{why}; retain utility within tolerance"
    return None


def refit_items(model: Recommender, ctx: UnlearnContext, share: float, steps: int, lr: float,
                sampler: NegativeSampler, rng: np.random.Generator, batch_size: int) -> dict:
    """Re-fit the own rows (`model.item_tables()`) of items that lost at least `share` of
    their interactions, on the interactions they kept, everything else fixed.

    Such an item's row was trained beside the neighbours the batch removed: with the graph
    rebuilt from the retain set, it lands below where a retrain puts it (ML-100k, MGCN: the
    backdoor canary's target, 33% of its interactions from fake users, fell from median rank
    51 to 140 for normal users after the exact step alone; a retrain put it at 99). Measured
    there (user-level 5% + canary, seeds 1-3): lr 0.005 x 30 steps put it at rank 93-96,
    attack success 9.2-9.4% (retrain 8.5-11.3%); lr 0.01 overshot to 16.8% (the original's)."""
    tables = model.item_tables()
    if not tables or not len(ctx.forget) or steps <= 0:
        return {"items": 0, "steps": 0}
    items = ctx.items_losing(share)
    pairs = ctx.data.train[np.isin(ctx.data.train[:, 1], items)]
    if not len(items) or not len(pairs):
        return {"items": 0, "steps": 0}
    named = dict(model.named_parameters())
    params = [named[t] for t in tables]
    rows = torch.zeros(model.n_items, 1, dtype=torch.bool)
    rows[torch.as_tensor(items)] = True
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    for _ in range(steps):
        b = pairs[rng.choice(len(pairs), size=min(batch_size, len(pairs)), replace=False)]
        u, i = torch.as_tensor(b[:, 0]), torch.as_tensor(b[:, 1])
        neg = torch.as_tensor(sampler.sample(b[:, 0], rng))
        model.zero_grad(set_to_none=True)
        loss, _ = model.loss(u, i, neg)
        loss.backward()
        for p in params:
            p.grad = torch.where(rows, p.grad, torch.zeros_like(p.grad))
        opt.step()
    model.zero_grad(set_to_none=True)
    return {"items": int(len(items)), "pairs": int(len(pairs)), "steps": steps, "share": share}


def _module_branch(model: Recommender) -> dict[str, str]:
    owner = {n: b for b, names in model.branches().items() for n in names}
    return {m: owner[names[0]] for m, names in model.selection_modules().items()}


def _reverse_repair_loop(ctx: UnlearnContext, params: Params, mechanisms) -> UnlearnResult:
    up = params.unlearn
    seed_everything(ctx.seed, params.train.threads)
    model, log = prepare(ctx, params)
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
    opt_rev = torch.optim.Adam(groups, lr=up.lr)
    opt_rep = torch.optim.Adam(model.parameters(), lr=up.repair_lr)
    prior_sampler = NegativeSampler(ctx.prior.train, model.n_items, ctx.data.candidates)
    retain_sampler = NegativeSampler(ctx.data.train, model.n_items, ctx.data.candidates)
    fusion = set(model.branches().get("fusion", []))
    per_user_retained = group_by_user(ctx.data.train, ctx.data.n_users)
    base_valid = rank_metrics_of(ctx.base, ctx.probes[1])["recall@20"]
    log["base_retain_valid_recall@20"] = base_valid
    log["probe_before"] = probe_metrics(model, ctx)
    if mechanisms is not None and mechanisms.refit_share > 0:
        log["refit"] = refit_items(model, ctx, mechanisms.refit_share, mechanisms.refit_steps, mechanisms.refit_lr,
                                   retain_sampler, rng, up.repair_batch_size)
    if mechanisms is not None and mechanisms.check_before_reverse:
        # reverse only where the deletion's influence survives: the stop rule, checked on the model
        # the reverse epochs would start from (after the exact step, the rebuilt graphs and the refit)
        start = probe_metrics(model, ctx) if log.get("refit", {}).get("steps") else log["probe_before"]
        log["probe_start"] = start
        stop = _stop_reason(start, up.stop, base_valid)
        if stop:
            log["stop"] = f"before the first reverse epoch: {stop}"
            log["reverse_sample"] = up.reverse_sample
            log["epochs"] = []
            model.eval()
            return UnlearnResult(model, log)
    schedule = ForgetSchedule(len(ctx.forget), up.reverse_sample, rng)
    log["reverse_sample"] = up.reverse_sample
    epochs = []
    for epoch in range(1, up.max_epochs + 1):
        e0 = time.perf_counter()
        row: dict = {"epoch": epoch}
        scales = {b: 1.0 for b in model.branches()}
        selected = list(modules)
        if mechanisms is not None and (mechanisms.scaling or mechanisms.selection) and len(ctx.forget):
            energies = gradient_energies(model, ctx.forget, ctx.data.train, retain_sampler, rng, mechanisms.probe_size,
                                         original)
            branch_e = energies.group(model.branches())
            module_e = energies.group(modules)
            row["branch_energy"] = branch_e
            if mechanisms.scaling:
                scales = branch_scales(branch_e, mechanisms.scale_gamma, mechanisms.scale_min, mechanisms.scale_max)
            if mechanisms.selection:
                selected, coverage = select_modules(module_e, mechanisms.capacity_rho)
                row["capacity_covered"] = coverage
        row["branch_scales"] = scales
        row["selected_modules"] = selected
        for g in opt_rev.param_groups:
            g["lr"] = up.lr * scales[module_branch[g["name"]]] if g["name"] in selected else 0.0

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
                gate, margin, in_top = ranking_gate(u_emb, i_emb, u, i, mask, mechanisms.gate_k, mechanisms.gate_temperature)
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

        # repair pass on (a neighbourhood of) D_r
        repair_pairs = neighbourhood_sample(ctx, up.repair_sample, rng)
        row["repair_loss"] = repair_pass(model, repair_pairs, retain_sampler, opt_rep, up.repair_batch_size, rng)
        guard()
        row["repair_pairs"] = int(len(repair_pairs))
        row.update(probe_metrics(model, ctx))
        row["seconds"] = time.perf_counter() - e0
        epochs.append(row)
        stop = _stop_reason(row, up.stop, base_valid)
        if stop:
            row["stop"] = stop
            break
    log["epochs"] = epochs
    model.eval()
    return UnlearnResult(model, log)


# baselines in their own modules register themselves on import
from tru.unlearning import multidelete as _multidelete  # noqa: E402,F401
from tru.unlearning import scalegun as _scalegun  # noqa: E402,F401
from tru.unlearning import ultrare as _ultrare  # noqa: E402,F401
