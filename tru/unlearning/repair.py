"""The final repair (`tru repair --batch B`): a bounded retain-side fine-tune with early
stopping on retain-validation Recall@20, and zero epochs when utility is already within
tolerance of the model before the batch."""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from tru.config import RepairParams
from tru.models.base import Recommender
from tru.train import NegativeSampler, seed_everything
from tru.unlearning.probes import rank_metrics_of, retain_eval, retain_sample
from tru.unlearning.registry import UnlearnContext
from tru.unlearning.steps import is_forgotten, neighbourhood_sample, probe_metrics, repair_pass


def final_repair(
    model: Recommender,
    ctx: UnlearnContext,
    params: RepairParams,
    lr: float,
    batch_size: int,
    seed: int,
    threads: int,
    checks=None,
) -> tuple[Recommender, dict]:
    """Repair passes (Adam at `lr`) over a neighbourhood of D_r until retain-validation
    Recall@20 is within `params.tolerance` of theta_0's or stops improving; returns the best
    model seen (the input one when it was already within tolerance) and the log.

    `checks` (audit.gate's params): a repair must not undo the erasure. When the input model
    passes the gate's erasure checks (the stop rule's, tru.unlearning.steps.is_forgotten), an
    epoch whose model no longer passes them is never kept, however good its utility.

    Retain-validation Recall@20 is read on `ctx.retain_users` retained users at most (all of
    them up to that many; tru.unlearning.probes.retain_sample)."""
    seed_everything(seed, threads)
    t0 = time.perf_counter()
    valid_set = retain_sample(retain_eval(ctx.data, "valid"), ctx.retain_users, ctx.seed)
    target = rank_metrics_of(ctx.base, valid_set)["recall@20"]
    floor = (1 - params.tolerance) * target
    current = rank_metrics_of(model, valid_set)["recall@20"]
    log = {"base_retain_valid_recall@20": target, "start_retain_valid_recall@20": current, "epochs": []}
    if current >= floor or params.max_epochs == 0:
        log.update(
            {
                "epochs_run": 0,
                "reason": "retain utility already within tolerance" if current >= floor else "max_epochs is 0",
                "seconds": time.perf_counter() - t0,
            }
        )
        return model, log
    guarded = checks is not None and is_forgotten(probe_metrics(model, ctx, checks))[0]
    log["erasure_checks_kept"] = guarded
    rng = np.random.default_rng(seed)
    sampler = NegativeSampler(ctx.data.train, model.n_items, ctx.data.candidates)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best, best_state, bad = current, copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, params.max_epochs + 1):
        pairs = neighbourhood_sample(ctx, params.sample, rng)
        loss = repair_pass(model, pairs, sampler, opt, batch_size, rng)
        model.eval()
        r = rank_metrics_of(model, valid_set)["recall@20"]
        row = {"epoch": epoch, "loss": loss, "retain_valid_recall@20": r}
        log["epochs"].append(row)
        if guarded:
            row["erasure_checks_hold"] = holds = is_forgotten(probe_metrics(model, ctx, checks))[0]
            if not holds:  # never kept; the repair goes on from it (utility may still come back)
                bad += 1
                if bad >= params.patience:
                    break
                continue
        if r > best:
            best, best_state, bad = r, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
        if best >= floor or bad >= params.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    log.update(
        {"epochs_run": len(log["epochs"]), "end_retain_valid_recall@20": best, "seconds": time.perf_counter() - t0}
    )
    return model, log
