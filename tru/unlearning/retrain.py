"""Retrain: from scratch on the retain set with the training recipe, the exact reference
every approximate method is measured against."""

from __future__ import annotations

from tru.config import Params
from tru.models import backbone_for
from tru.train import EvalSet, fit, seed_everything
from tru.unlearning.registry import UnlearnContext, UnlearnResult, register_method


@register_method("retrain")
def retrain(ctx: UnlearnContext, params: Params) -> UnlearnResult:
    """A fresh backbone trained by `fit` on D_r (validation on the retained users, snapshots in
    `ctx.resume_folder("retrain")`); the log holds fit's history and resume bookkeeping."""
    seed_everything(params.seed, params.train.threads)
    model = backbone_for(params.model, ctx.data)
    valid = EvalSet.build(ctx.data.valid, ctx.data.train, ctx.data.n_users)
    res = fit(
        model,
        ctx.data.train,
        valid,
        params.train,
        params.seed,
        candidates=ctx.data.candidates,
        desc=f"retrain (training seed {params.seed})",  # a log of replicates tells them apart
        resume=ctx.resume_folder("retrain"),
    )
    return UnlearnResult(
        res.model,
        {
            "method": "retrain",
            "best_epoch": res.best_epoch,
            "epochs": res.history,
            "resumed_from_epoch": res.resumed_from,
            "resumed_seconds": res.resumed_seconds,
        },
    )
