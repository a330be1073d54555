"""`exact`: the exact entity step alone, the baseline every approximate method starts from.

It erases the deleted users' and items' private rows (fresh rows, as a retrain's
initialisation would give them) and rebuilds the graphs from the retained data
(tru.unlearning.steps.prepare), and runs no reverse epoch; the final repair follows as for
every approximate method (the repair stage, or the benchmarks' `erase_variant`). What a
method adds over `exact` is what its reverse updates add."""

from __future__ import annotations

from tru.config import Params
from tru.unlearning.registry import UnlearnContext, UnlearnResult, register_method
from tru.unlearning.steps import prepare


@register_method("exact")
def exact(ctx: UnlearnContext, params: Params) -> UnlearnResult:
    """The exact erasure and graph rebuild of `prepare`, no reverse epoch; the log says so."""
    model, log = prepare(ctx, params)
    log.update({"method": "exact", "epochs": []})
    return UnlearnResult(model, log)
