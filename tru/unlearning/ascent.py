"""Gradient ascent: the naive baseline, ascent on the training loss of the forget set, after
the exact erasure and graph rebuild every approximate method starts from."""

from __future__ import annotations

import time

import numpy as np
import torch

from tru.config import Params
from tru.train import NegativeSampler, seed_everything, train_steps
from tru.unlearning.registry import UnlearnContext, UnlearnResult, register_method
from tru.unlearning.steps import erased_row_guard, prepare, probe_metrics, shuffled_batches


@register_method("gradient_ascent")
def gradient_ascent(ctx: UnlearnContext, params: Params) -> UnlearnResult:
    """`unlearn.ascent_epochs` shuffled passes of Adam ascent over D_f (erased rows held in
    place after every step); the log holds each epoch's summed loss and probe metrics."""
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
        batches = shuffled_batches(ctx.forget, sampler, rng, params.unlearn.forget_batch_size)
        total, _, _ = train_steps(model, opt, batches, ascent=True, after_step=guard)
        epochs.append(
            {
                "epoch": epoch,
                "ascent_loss": total,
                "seconds": time.perf_counter() - e0,
                **probe_metrics(model, ctx, params.audit.gate),
            }
        )
    log.update({"method": "gradient_ascent", "epochs": epochs})
    return UnlearnResult(model, log)
