"""The erase stage: the batch's unlearning method (or the reference retrain) from its base model."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tru import paths
from tru.checkpoint import save_checkpoint
from tru.config import Params, unlearn_for
from tru.errors import ConfigError
from tru.io import write_json
from tru.stages.context import load_context, split_timings
from tru.stages.model import resume_folder
from tru.unlearning import run_method


def erase_stage(
    params: Params,
    batch_id: str,
    method: str | None = None,
    out_dir: str | Path | None = None,
    batches_file: str | Path | None = None,
) -> dict:
    """Run the unlearning method on the batch (exact erasure, graph rebuild, then the method);
    write the checkpoint, its log and its wall-clock timings. `method` other than the batch's
    own needs `out_dir`, except `retrain`, the reference, which goes to data/batches/B/retrain.

    Where the log and timings go:
    - the batch's own method: reports/B/update_log.json and reports/B/timings/update.json;
    - the reference retrain (`retrain`, no `out_dir`): reports/B/retrain_log.json and
      reports/B/timings/retrain.json;
    - any run into an `out_dir` of its own: `out_dir`/update_log.json and `out_dir`/timings.json,
      next to its checkpoint, so a side run never overwrites the batch's evidence.

    Returns the checkpoint's path and weights hash, the method, its seconds and where its log
    and timings went."""
    params = unlearn_for(params)
    t = time.perf_counter()
    ctx, entry = load_context(params, batch_id, batches_file)
    context_seconds = time.perf_counter() - t
    own = entry.get("method", params.unlearn.method)
    method = method or own
    if out_dir is None and method != own and method != "retrain":
        raise ConfigError(
            f"batch {batch_id} is erased with {own!r}: run another method with --out DIR "
            f"(or `--method retrain` for the reference retrain)"
        )
    if method == "ultrare":
        raise ConfigError(
            "ultrare is a benchmark baseline: its result is an ensemble of sub-models, not one "
            "checkpoint the pipeline can promote (tru bench unlearn|grid run it)"
        )
    # the batch's own method writes the batch's erasure; `retrain` otherwise is the reference
    default_out = paths.batch_dir(batch_id) / ("unlearned" if method == own else "retrain")
    out = Path(out_dir) if out_dir else default_out
    ctx.resume = resume_folder(out)  # a killed retrain continues from its snapshots
    result = run_method(method, ctx, params)
    t = time.perf_counter()
    digest = save_checkpoint(
        out,
        result.model,
        {
            "batch": batch_id,
            "method": method,
            "base_model": entry["base_model"],
            "seed": ctx.seed,
            "unlearn": params.unlearn.model_dump(),
        },
    )
    save_seconds = time.perf_counter() - t
    shutil.rmtree(ctx.resume, ignore_errors=True)
    log, timings = split_timings(result.log)
    if out.resolve() == default_out.resolve():
        name = "update" if method == own else "retrain"
        log_path = paths.report_dir(batch_id) / f"{name}_log.json"
        timings_path = paths.report_dir(batch_id) / "timings" / f"{name}.json"
    else:  # a run into a folder of its own: its log stays with it
        log_path, timings_path = out / "update_log.json", out / "timings.json"
    write_json(log_path, {"batch": batch_id, "method": method, **log})
    # the method's seconds (total), and the stage's own around it: reading the batch's data and
    # models, writing the checkpoint
    timings |= {"context_seconds": context_seconds, "save_seconds": save_seconds}
    write_json(timings_path, {"total_seconds": result.seconds, **timings})
    return {
        "checkpoint": str(out),
        "weights_sha256": digest,
        "method": method,
        "seconds": result.seconds,
        "log": str(log_path),
        "timings": str(timings_path),
    }
