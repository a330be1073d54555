"""Steps the approximate unlearning methods share: the exact erasure and graph rebuild every
method starts from (`prepare`), holding the erased rows in place, the retain neighbourhood to
repair on, a BPR pass over pairs (repair, and gradient ascent's forget pass), and the probe
metrics logged after every epoch."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch

from tru.config import Params
from tru.models.base import Recommender
from tru.train import NegativeSampler, train_steps
from tru.unlearning.probes import rank_metrics_of, shadow_membership
from tru.unlearning.registry import UnlearnContext


def prepare(ctx: UnlearnContext, params: Params) -> tuple[Recommender, dict]:
    """A copy of theta_0 with private rows erased exactly and the graphs rebuilt from D_r
    (`unlearn.exact_erasure`, `unlearn.rebuild_graphs`), and the log of what was done."""
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


@contextmanager
def gradients_only_for(model: Recommender, names: list[str]) -> Iterator[None]:
    """Within the block, only the parameters `names` of `model` take a gradient; the others keep
    their values and are read as constants, so backward stops where it reaches them instead of
    filling gradients nobody steps with. Their previous `requires_grad` comes back on leaving.
    The gradients of `names` are the same numbers as with everything trainable, and the
    forward pass draws the same dropout masks: a fit of a few tables inside it lands on the
    same weights, in less time (ML-100k, MIG-GT: backward through the modality encoders was a
    third of a user re-fit's 100 steps)."""
    keep = set(names)
    frozen = [p for n, p in model.named_parameters() if n not in keep and p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


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


def shuffled_batches(
    pairs: np.ndarray, sampler: NegativeSampler, rng: np.random.Generator, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """`pairs` [n, 2] in a shuffled order, cut into (users, items, negatives) index tensors of
    `batch_size` rows; each batch's negatives are drawn from `rng` as the batch comes."""
    order = rng.permutation(len(pairs))
    for s in range(0, len(order), batch_size):
        b = pairs[order[s : s + batch_size]]
        yield torch.as_tensor(b[:, 0]), torch.as_tensor(b[:, 1]), torch.as_tensor(sampler.sample(b[:, 0], rng))


def repair_pass(
    model: Recommender,
    pairs: np.ndarray,
    sampler: NegativeSampler,
    opt: torch.optim.Optimizer,
    batch_size: int,
    rng: np.random.Generator,
) -> float:
    """One shuffled pass of training-loss descent over the retain pairs `pairs`, in train mode;
    returns the mean batch loss (0.0 without pairs)."""
    model.train()
    total, steps, _ = train_steps(model, opt, shuffled_batches(pairs, sampler, rng, batch_size))
    return total / max(steps, 1)


def probe_metrics(model: Recommender, ctx: UnlearnContext, gate) -> dict:
    """Forget Recall@20, retain Recall@20 on retained users' shadow pairs, the calibrated
    membership test against shadow pairs and the item-side residue check (`gate`: the audit
    gate's params, whose checks these are), from one forward pass (leaves the model in eval
    mode). No valid or test row is read. Both retain-side rankings read at most
    `ctx.retain_users` retained users (unlearn.stop.retain_users): the shadow pairs' and the
    item-side check's."""
    from tru.audit.residue import item_residue, residue_items  # why: the audit's check, the same code

    model.eval()
    forget_set, shadow_set = ctx.probes[:2]
    score = model.score_fn()
    forget = rank_metrics_of(model, forget_set, score=score)
    retain = rank_metrics_of(model, shadow_set, score=score)
    test = shadow_membership(model, ctx, gate, score=score)
    row = {
        "forget_recall@20": forget["recall@20"],
        "retain_shadow_recall@20": retain["recall@20"],
        "membership_auc": test["auc"],
        "membership_threshold": test["threshold"],
        "residue_checked": 0,
        "residue_flagged": None,
    }
    # the gate's items: those the batch took engagement from, and its backdoor targets
    checked, declared = residue_items(ctx, gate, ctx.targets)
    if len(checked) or len(declared):
        res = item_residue(
            model,
            ctx.data.train,
            ctx.residue_users,
            ctx.data.candidates,
            checked,
            declared,
            n_peers=gate.residue_peers,
            declared_alpha=gate.residue_declared_alpha,
            alpha=gate.residue_alpha,
        )
        row["residue_checked"], row["residue_flagged"] = res["checked"], res["flagged"]
    return row


def original_power(ctx: UnlearnContext, gate) -> dict:
    """Whether each of the stop rule's erasure checks has power on this batch: it fails the
    original model theta_0 (`ctx.base`, which trained on everything erased), as the audit gate
    judges power. {"membership_power": bool, "residue_power": bool}, computed once per context
    (theta_0 does not change)."""
    cache = ctx.__dict__.setdefault("_original_power", {})
    key = (gate.membership_permutations, gate.membership_quantile, gate.membership_min_effect, gate.residue_peers)
    if key not in cache:
        row = probe_metrics(ctx.base, ctx, gate)
        auc = row["membership_auc"]
        cache[key] = {
            "membership_power": auc is not None and auc > row["membership_threshold"],
            "residue_power": bool(row["residue_flagged"]),
        }
    return dict(cache[key])


def is_forgotten(row: dict, evidence: bool = False) -> tuple[bool, str]:
    """The stopping signal, without a retrain reference: the gate's erasure checks on the probe
    row. Forgotten once the forgotten pairs rank no higher than shadow pairs (never trained on)
    of the same users or items, by the calibrated membership test, and no item the batch took
    engagement from ranks above its popularity peers (the item-side residue check). With neither
    (no pair to compare and no item to check), once the forgotten pairs reach their users'
    top-20 no more often than retained users' shadow pairs reach theirs.

    `evidence`: a check that passes counts only where it has power on the batch (the row's
    `membership_power` / `residue_power`, from `original_power`): one that theta_0 passes too
    says nothing about the erasure. Without a check with power, the top-20 comparison above
    decides. The pre-check before the first reverse epoch asks for evidence: skipping the
    reverse pass altogether is a claim that the exact step removed the deletion's influence."""
    auc, flagged = row["membership_auc"], row.get("residue_flagged")
    top = "forgotten pairs reach their users' top-20 no more often than shadow pairs"
    if auc is None and flagged is None:
        return row["forget_recall@20"] <= row["retain_shadow_recall@20"], top
    if evidence and not (
        (auc is not None and row.get("membership_power")) or (flagged is not None and row.get("residue_power"))
    ):
        if (auc is not None and auc > row["membership_threshold"]) or (flagged is not None and flagged > 0):
            return False, ""
        held = row["forget_recall@20"] <= row["retain_shadow_recall@20"]
        return held, f"no erasure check has power on this batch (the original passes them too): {top}"
    why = []
    if auc is not None:
        if auc > row["membership_threshold"]:
            return False, ""
        why.append(f"forgotten pairs rank like shadow pairs (AUC {auc:.3f} <= {row['membership_threshold']:.3f})")
    if flagged is not None:
        if flagged > 0:
            return False, ""
        why.append(f"none of {row['residue_checked']} items checked ranks above its popularity peers")
    return True, "; ".join(why)
