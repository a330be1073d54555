"""What the batch stages share: the batch's unlearning context read from its files, the batch
seed, its models, the retain/forget metrics and the split of wall-clock figures out of logs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from tru import batches, paths
from tru.audit.canary import load as load_canary
from tru.checkpoint import load_checkpoint
from tru.config import Params
from tru.data.dataset import load_split, read_pairs
from tru.errors import DataError
from tru.unlearning import UnlearnContext
from tru.unlearning.probes import forget_eval, rank_metrics_of, retain_eval


def batch_seed(seed: int, batch_id: str) -> int:
    """A seed derived from the run's seed and the batch id (stable across runs and machines)."""
    return (seed + int(hashlib.sha256(batch_id.encode()).hexdigest()[:8], 16)) % (2**31)


def split_timings(obj, path: str = ""):
    """Move every wall-clock figure ("seconds") out of a log, so the log itself stays
    byte-identical across runs; returns (log, {path: seconds})."""
    timings = {}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            where = f"{path}.{k}" if path else k
            if k == "seconds" or k.endswith("_seconds"):
                timings[where] = v
                continue
            out[k], t = split_timings(v, where)
            timings.update(t)
        return out, timings
    if isinstance(obj, list):
        out_list = []
        for j, v in enumerate(obj):
            o, t = split_timings(v, f"{path}[{j}]")
            out_list.append(o)
            timings.update(t)
        return out_list, timings
    return obj, timings


def load_context(params: Params, batch_id: str, batches_file: str | Path | None = None) -> tuple[UnlearnContext, dict]:
    """Everything an unlearning method needs for a batch, read from the batch's files; returns
    the context and the batch's entry of batches.yaml."""
    entry = batches.batch_entry(batch_id, batches_file or paths.BATCHES_FILE)
    prior = load_split(entry["prior"], params.data.dataset_dir)
    sets = paths.sets_dir(batch_id)
    data = load_split(sets, params.data.dataset_dir)
    base, _ = load_checkpoint(entry["base_model"], prior.features)
    base.set_graph(prior.train, prior.active_items)
    canary = load_canary(sets) or {}
    fake = np.asarray(canary.get("fake_users", []), np.int64)
    new_users = np.setdiff1d(data.deleted_users, prior.deleted_users)
    deletes_canary = bool(len(fake)) and bool(np.isin(fake, new_users).all())
    # the chain's start: the generation's base model, where this batch starts from a later one
    start = Path(paths.BASE_MODEL)
    chained = Path(entry["base_model"]).resolve() != start.resolve() and (start / "checkpoint.json").is_file()
    return UnlearnContext(
        base=base,
        prior=prior,
        data=data,
        forget=read_pairs(sets / "forget.parquet"),
        heldout=read_pairs(sets / "heldout.parquet"),
        heldout_shadow=read_pairs(sets / "heldout_shadow.parquet")
        if (sets / "heldout_shadow.parquet").is_file()
        else np.zeros((0, 2), np.int64),
        new_users=new_users,
        new_items=np.setdiff1d(data.deleted_items, prior.deleted_items),
        seed=batch_seed(params.seed, batch_id),
        fake_users=fake,
        targets=np.asarray([int(canary["target_item"])] if deletes_canary else [], np.int64),
        chain_start_path=start if chained else None,
    ), entry


def batch_models(ctx: UnlearnContext, batch_id: str) -> dict:
    """original, unlearned (the batch's repaired model) and, when run, the reference retrain,
    each in eval mode on the retain graph. Raises DataError when the batch has no model yet."""
    models = {"original": ctx.base}
    for name, folder in (("unlearned", "model"), ("retrain", "retrain")):
        path = paths.batch_dir(batch_id) / folder
        if (path / "model.safetensors").is_file():
            model, _ = load_checkpoint(path, ctx.data.features)
            model.set_graph(ctx.data.train, ctx.data.active_items)
            model.eval()
            models[name] = model
        elif name == "unlearned":
            raise DataError(f"{path}: no model for batch {batch_id} (run `tru erase` and `tru repair` first)")
    return models


def batch_metrics(model, ctx, ks=(20,), score=None, keep_rows: bool = False) -> dict:
    """Retain (test, valid, shadow) and forget ranking metrics of `model` on the deletion `ctx`;
    with `score` (users -> score rows), of that ranking instead (model None). `keep_rows`: each
    retained user's Recall@20 on the shadow pairs too (`retain_shadow` "rows"), which
    `with_retain_drop` pairs with another model's; `without_rows` drops them before writing."""
    if model is not None:
        model.eval()
    out = {}
    for name, es in (
        ("retain", retain_eval(ctx.data, "test")),
        ("retain_valid", retain_eval(ctx.data, "valid")),
        ("retain_shadow", retain_eval(ctx.data, "shadow")),
        ("forget", forget_eval(ctx.data, ctx.forget)),
    ):
        rows = "recall@20" if keep_rows and name == "retain_shadow" else None
        m = rank_metrics_of(model, es, ks, score=score, rows=rows)
        out[name] = {k: round(v, 6) if isinstance(v, float) else v for k, v in m.items()}
    return out


def without_rows(metrics: dict) -> dict:
    """`metrics` (batch_metrics) without the per-user rows kept for the retain interval."""
    return {
        k: ({kk: vv for kk, vv in v.items() if kk != "rows"} if isinstance(v, dict) else v) for k, v in metrics.items()
    }


def with_retain_drop(original: dict, other: dict, gate) -> dict:
    """`other`'s metrics (batch_metrics with keep_rows) with `retain_shadow_drop`: its drop of
    Recall@20 on retained users' shadow pairs from `original`'s (the same, with keep_rows) and
    the drop's bounds, which the gate's retain check judges (tru.audit.gate.retain_drop_interval);
    the rows removed."""
    from tru.audit.gate import retain_drop_interval

    out = without_rows(other)
    out["retain_shadow_drop"] = retain_drop_interval(
        original["retain_shadow"]["rows"], other["retain_shadow"]["rows"], gate.retain_confidence, gate.retain_resamples
    )
    return out
