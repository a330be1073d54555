"""The repair stage: the final retain-side repair of the unlearned model."""

from __future__ import annotations

from pathlib import Path

from tru import paths
from tru.checkpoint import load_checkpoint, save_checkpoint
from tru.config import Params, unlearn_for
from tru.io import write_json
from tru.stages.context import load_context, split_timings
from tru.unlearning.repair import final_repair


def repair_stage(params: Params, batch_id: str, batches_file: str | Path | None = None) -> dict:
    """Final retain-side repair of the unlearned model -> the batch's model (0 epochs when
    utility is within tolerance). Returns the checkpoint's path, weights hash and epochs run."""
    params = unlearn_for(params)
    ctx, entry = load_context(params, batch_id, batches_file)
    ctx.retain_users = params.unlearn.stop.retain_users
    src = paths.batch_dir(batch_id) / "unlearned"
    model, meta = load_checkpoint(src, ctx.data.features)
    if params.unlearn.rebuild_graphs:
        model.set_graph(ctx.data.train, ctx.data.active_items)
    else:
        model.set_graph(ctx.prior.train, ctx.prior.active_items)
    model, log = final_repair(
        model,
        ctx,
        params.repair,
        params.unlearn.repair_lr,
        params.unlearn.repair_batch_size,
        ctx.seed,
        params.train.threads,
        checks=params.audit.gate,
    )
    out = paths.batch_dir(batch_id) / "model"
    digest = save_checkpoint(
        out,
        model,
        {
            "batch": batch_id,
            "method": meta["method"],
            "repaired_from": str(src),
            "seed": ctx.seed,
            "repair": params.repair.model_dump(),
        },
    )
    log, timings = split_timings(log)
    write_json(paths.report_dir(batch_id) / "repair_log.json", {"batch": batch_id, **log})
    write_json(paths.report_dir(batch_id) / "timings" / "repair.json", timings)
    return {"checkpoint": str(out), "weights_sha256": digest, "epochs": log["epochs_run"]}
