"""The evaluate_batch stage: retain and forget ranking metrics of the batch's models."""

from __future__ import annotations

from pathlib import Path

from tru import paths
from tru.checkpoint import load_checkpoint
from tru.config import Params
from tru.io import read_json, write_json
from tru.stages.context import batch_metrics, load_context, with_retain_drop, without_rows
from tru.stages.plotdata import write_recall_plot


def evaluate_batch_stage(params: Params, batch_id: str, batches_file: str | Path | None = None) -> dict:
    """reports/<batch>/metrics.json: retain/forget metrics of the original, unlearned and (when
    run) retrain models, and the same Recall@20 as a DVC plot (plots/recall.json); the methods'
    seconds go to timings/methods.json. Returns the path, the values and the seconds."""
    ctx, _ = load_context(params, batch_id, batches_file)
    original = batch_metrics(ctx.base, ctx, keep_rows=True)
    out = {"batch": batch_id, "original": without_rows(original)}
    for name, folder in (("unlearned", "model"), ("retrain", "retrain")):
        path = paths.batch_dir(batch_id) / folder
        if (path / "model.safetensors").is_file():
            model, _ = load_checkpoint(path, ctx.data.features)
            model.set_graph(ctx.data.train, ctx.data.active_items)
            # each model's retain drop from the original with its bounds, which the gate judges
            out[name] = with_retain_drop(original, batch_metrics(model, ctx, keep_rows=True), params.audit.gate)
    seconds = {}
    for name in ("update", "repair", "retrain"):
        t = paths.report_dir(batch_id) / "timings" / f"{name}.json"
        if t.is_file():
            recorded = read_json(t)
            seconds[name] = recorded.get("total_seconds", recorded.get("seconds"))
    path = paths.report_dir(batch_id) / "metrics.json"
    write_json(path, out)
    write_recall_plot(batch_id, out)
    write_json(paths.report_dir(batch_id) / "timings" / "methods.json", seconds)
    return {"metrics": str(path), "values": out, "seconds": seconds}
