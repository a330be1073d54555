"""One function per pipeline stage. The `tru` CLI (hence every DVC stage) and the Prefect
tasks call these and nothing else, so both produce the same files with the same hashes.

Each function takes validated params and the paths it reads and writes, and returns a
small JSON-able summary (paths and hashes, never tensors or frames).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tru.config import Params
from tru.io import read_json, sha256_file, sha256_tree, write_json

DEFAULT_PATHS = {
    "raw": "data/raw",
    "split": "data/split",
    "model": "data/models/base",
    "train_log": "reports/train/train_log.json",
    "metrics": "reports/train/metrics.json",
}


def fetch_stage(params: Params, raw_dir: str | Path = DEFAULT_PATHS["raw"]) -> dict:
    from tru.data.build import fetch

    info = fetch(params, raw_dir)
    return {"raw_dir": str(raw_dir), "sha256": sha256_tree(raw_dir), "info": info}


def featurize_stage(params: Params, raw_dir: str | Path = DEFAULT_PATHS["raw"], out_dir: str | Path | None = None) -> dict:
    from tru.data.build import build_dataset

    out_dir = Path(out_dir or params.data.dataset_dir)
    manifest = build_dataset(params, raw_dir, out_dir)
    return {"dataset_dir": str(out_dir), "sha256": sha256_tree(out_dir), "manifest": manifest}


def split_stage(params: Params, dataset_dir: str | Path | None = None, out_dir: str | Path = DEFAULT_PATHS["split"]) -> dict:
    from tru.data.mmrec import load_folder
    from tru.data.split import make_split

    dataset_dir = Path(dataset_dir or params.data.dataset_dir)
    folder = load_folder(dataset_dir)
    summary = make_split(folder, params.split, params.seed, Path(out_dir), dataset_dir, params.canary)
    return {"split_dir": str(out_dir), "sha256": sha256_tree(out_dir), "summary": summary}


def train_stage(
    params: Params,
    split_dir: str | Path = DEFAULT_PATHS["split"],
    out_dir: str | Path = DEFAULT_PATHS["model"],
    log_path: str | Path = DEFAULT_PATHS["train_log"],
    progress: bool = True,
) -> dict:
    from tru.checkpoint import save_checkpoint
    from tru.data.dataset import load_split
    from tru.models import build_backbone
    from tru.train import EvalSet, Resume, fit, seed_everything

    data = load_split(split_dir)
    seed_everything(params.seed, params.train.threads)
    model = build_backbone(params.model.backbone, getattr(params.model, params.model.backbone).model_dump(),
                           data.n_users, data.n_items, data.features)
    valid = EvalSet.build(data.valid, data.train, data.n_users)
    # a killed run continues from its last snapshot, next to the output (the same result)
    resume = resume_folder(out_dir)
    result = fit(model, data.train, valid, params.train, params.seed, progress=progress, desc="train", resume=resume)
    digest = save_checkpoint(out_dir, result.model, {
        "seed": params.seed,
        "train": params.train.recipe(),
        "best_epoch": result.best_epoch,
        "best_valid": result.best_valid,
        "data": {"split_sha256": sha256_tree(split_dir), "dataset": data.name},
    })
    seconds = [h["seconds"] for h in result.history]
    write_json(log_path, {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "total_seconds": result.seconds,
        "resumed_from_epoch": result.resumed_from,
        "history": result.history,
        "median_epoch_seconds": sorted(seconds)[len(seconds) // 2] if seconds else 0.0,
    })
    Resume(resume).clear()
    return {"checkpoint": str(out_dir), "weights_sha256": digest, "best_epoch": result.best_epoch,
            "best_valid": result.best_valid, "seconds": result.seconds, "resumed_from": result.resumed_from}


def resume_folder(out_dir: str | Path) -> Path:
    """Where training for `out_dir` (base training; an erasure by an exact method, its retrain)
    keeps its resume snapshots: `<out_dir>.resume/`."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".resume")


def evaluate_stage(
    params: Params,
    checkpoint: str | Path = DEFAULT_PATHS["model"],
    split_dir: str | Path = DEFAULT_PATHS["split"],
    out_path: str | Path = DEFAULT_PATHS["metrics"],
) -> dict:
    from tru.checkpoint import load_checkpoint
    from tru.data.dataset import load_split
    from tru.train import EvalSet, evaluate, seed_everything

    seed_everything(params.seed, params.train.threads)
    data = load_split(split_dir)
    model, _ = load_checkpoint(checkpoint, data.features)
    model.set_graph(data.train)
    out = {}
    for split in ("valid", "test"):
        metrics = evaluate(model, EvalSet.build(data.pairs(split), data.train, data.n_users),
                           ks=params.evaluate.ks, batch_users=params.train.eval_batch_users)
        out[split] = {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}
    write_json(out_path, out)
    return {"metrics": str(out_path), "sha256": sha256_file(out_path), "values": out}


# --- deletion batches ---------------------------------------------------------------------


def ingest_stage(params: Params, inbox: str | Path | None = None, files: list[str | Path] | None = None,
                 now=None, batches_file: str | Path | None = None, split_dir: str | Path = DEFAULT_PATHS["split"]) -> dict:
    """Take the pending inbox files (or the given `files`, copied into the inbox first) as one
    batch: validate every row, write the batch's ledger, archive the inputs, register the batch.

    `now` (a datetime or an ISO-8601 text; default: the clock) names the batch and seeds its
    erasure: a fixed time replays an inbox reproducibly. A time not after the last batch's is
    refused before anything is written. An empty inbox changes nothing. An unreadable file
    raises DataError and changes nothing.
    """
    import shutil
    from datetime import datetime, timezone

    from tru import batches
    from tru.errors import DataError
    from tru.requests.ingest import Catalog, ingest_batch, pending_files
    from tru.requests.ledger import new_batch_id, parse_batch_time
    from tru.requests.pseudonym import load_key

    now = datetime.now(timezone.utc) if now is None else parse_batch_time(now) if isinstance(now, str) else now
    inbox = Path(inbox or batches.INBOX)
    batches_file = Path(batches_file or batches.BATCHES_FILE)
    key = load_key()
    if files:
        inbox.mkdir(parents=True, exist_ok=True)
        for f in files:
            f = Path(f)
            if not f.is_file():
                raise DataError(f"{f}: no such file")
            shutil.copy2(f, inbox / f.name)
    if pending_files(inbox):
        batches.check_ready_for_next(batches_file)
        try:
            batches.check_newer(new_batch_id(now), batches_file)
        except DataError as err:
            raise DataError(f"{err}: nothing ingested (the requests stay in the inbox)") from None
    catalog = Catalog.from_dataset(params.data.dataset_dir, split_dir)
    summary = ingest_batch(inbox, batches.ARCHIVE, batches.LEDGER, catalog, key, now=now)
    if summary["batch_id"] is not None:
        summary["registered"] = batches.register_batch(
            summary["batch_id"], batches_file, model_of=batches.promoted_model, method=params.unlearn.method)
    return summary


def sets_stage(params: Params, batch_id: str, batches_file: str | Path | None = None) -> dict:
    """Forget / retain sets of a batch from its ledger and the sets its predecessor left."""
    import pyarrow.parquet as pq

    from tru import batches
    from tru.requests.ledger import requests_path
    from tru.requests.sets import build_sets

    entry = batches.batch_entry(batch_id, batches_file or batches.BATCHES_FILE)
    requests = pq.read_table(requests_path(batches.LEDGER, batch_id)).to_pandas()
    out = batches.sets_dir(batch_id)
    meta = build_sets(entry["prior"], requests, batch_id, out)
    return {"sets_dir": str(out), "sha256": sha256_tree(out), "batch": meta["batch"]}


def map_stage(params: Params, batch_id: str, batches_file: str | Path | None = None, probe_size: int = 2048) -> dict:
    """components.json: what the batch touches, what to rebuild, and the deletion heat map."""
    import numpy as np

    from tru import batches
    from tru.checkpoint import load_checkpoint
    from tru.data.dataset import load_split, read_pairs
    from tru.train import seed_everything
    from tru.unlearning.components import map_components

    entry = batches.batch_entry(batch_id, batches_file or batches.BATCHES_FILE)
    seed_everything(params.seed, params.train.threads)
    prior = load_split(entry["prior"], params.data.dataset_dir)
    sets = batches.sets_dir(batch_id)
    forget = read_pairs(sets / "forget.parquet")
    meta = read_json(sets / "split.json")
    new_items = np.setdiff1d(np.asarray(meta["deleted_items"], np.int64), prior.deleted_items)
    model, _ = load_checkpoint(entry["base_model"], prior.features)
    model.set_graph(prior.train, prior.active_items)
    components = map_components(model, prior.train, forget, new_items, meta["batch"]["targets"],
                                seed=params.seed, probe_size=probe_size)
    seconds = components.pop("seconds")
    components["batch"] = batch_id
    components["base_model"] = entry["base_model"]
    out = batches.report_dir(batch_id) / "components.json"
    write_json(out, components)
    write_json(batches.report_dir(batch_id) / "timings" / "map.json", {"map_seconds": seconds})
    return {"components": str(out), "sha256": sha256_file(out), "seconds": seconds}


# --- erasure ----------------------------------------------------------------------------------


def batch_seed(seed: int, batch_id: str) -> int:
    """A seed derived from the run's seed and the batch id (stable across runs and machines)."""
    import hashlib

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
        out = []
        for j, v in enumerate(obj):
            o, t = split_timings(v, f"{path}[{j}]")
            out.append(o)
            timings.update(t)
        return out, timings
    return obj, timings


def load_context(params: Params, batch_id: str, batches_file: str | Path | None = None):
    """Everything an unlearning method needs for a batch, read from the batch's files."""
    import numpy as np

    from tru import batches
    from tru.checkpoint import load_checkpoint
    from tru.data.dataset import load_split, read_pairs
    from tru.unlearning.methods import UnlearnContext

    entry = batches.batch_entry(batch_id, batches_file or batches.BATCHES_FILE)
    prior = load_split(entry["prior"], params.data.dataset_dir)
    sets = batches.sets_dir(batch_id)
    data = load_split(sets, params.data.dataset_dir)
    base, _ = load_checkpoint(entry["base_model"], prior.features)
    base.set_graph(prior.train, prior.active_items)
    return UnlearnContext(
        base=base, prior=prior, data=data,
        forget=read_pairs(sets / "forget.parquet"), heldout=read_pairs(sets / "heldout.parquet"),
        new_users=np.setdiff1d(data.deleted_users, prior.deleted_users),
        new_items=np.setdiff1d(data.deleted_items, prior.deleted_items),
        seed=batch_seed(params.seed, batch_id),
    ), entry


def erase_stage(params: Params, batch_id: str, method: str | None = None, out_dir: str | Path | None = None,
                batches_file: str | Path | None = None) -> dict:
    """Run the unlearning method on the batch; write the unlearned checkpoint and update_log.json."""
    from tru import batches
    from tru.checkpoint import save_checkpoint
    from tru.unlearning.methods import run_method

    from tru.config import unlearn_for

    params = unlearn_for(params)
    ctx, entry = load_context(params, batch_id, batches_file)
    own = entry.get("method", params.unlearn.method)
    method = method or own
    if out_dir is None and method != own and method != "retrain":
        from tru.errors import ConfigError

        raise ConfigError(f"batch {batch_id} is erased with {own!r}: run another method with --out DIR "
                          f"(or `--method retrain` for the reference retrain)")
    if method == "ultrare":
        from tru.errors import ConfigError

        raise ConfigError("ultrare is a benchmark baseline: its result is an ensemble of sub-models, not one "
                          "checkpoint the pipeline can promote (tru bench unlearn|grid run it)")
    # the batch's own method writes the batch's erasure; `retrain` otherwise is the reference
    out = Path(out_dir) if out_dir else batches.BATCH_DATA / batch_id / ("unlearned" if method == own else "retrain")
    ctx.resume = resume_folder(out)  # a killed retrain continues from its snapshots
    result = run_method(method, ctx, params)
    digest = save_checkpoint(out, result.model, {"batch": batch_id, "method": method, "base_model": entry["base_model"],
                                                 "seed": ctx.seed, "unlearn": params.unlearn.model_dump()})
    shutil.rmtree(ctx.resume, ignore_errors=True)
    log, timings = split_timings(result.log)
    name = "update" if method == own else "retrain"
    write_json(batches.report_dir(batch_id) / f"{name}_log.json", {"batch": batch_id, "method": method, **log})
    write_json(batches.report_dir(batch_id) / "timings" / f"{name}.json", {"total_seconds": result.seconds, **timings})
    return {"checkpoint": str(out), "weights_sha256": digest, "method": method, "seconds": result.seconds}


def repair_stage(params: Params, batch_id: str, batches_file: str | Path | None = None) -> dict:
    """Final retain-side repair of the unlearned model -> the batch's model."""
    from tru import batches
    from tru.checkpoint import load_checkpoint, save_checkpoint
    from tru.config import unlearn_for
    from tru.unlearning.repair import final_repair

    params = unlearn_for(params)
    ctx, entry = load_context(params, batch_id, batches_file)
    src = batches.BATCH_DATA / batch_id / "unlearned"
    model, meta = load_checkpoint(src, ctx.data.features)
    if params.unlearn.rebuild_graphs:
        model.set_graph(ctx.data.train, ctx.data.active_items)
    else:
        model.set_graph(ctx.prior.train, ctx.prior.active_items)
    model, log = final_repair(model, ctx, params.repair, params.unlearn.repair_lr, params.unlearn.repair_batch_size,
                              ctx.seed, params.train.threads)
    out = batches.BATCH_DATA / batch_id / "model"
    digest = save_checkpoint(out, model, {"batch": batch_id, "method": meta["method"], "repaired_from": str(src),
                                          "seed": ctx.seed, "repair": params.repair.model_dump()})
    log, timings = split_timings(log)
    write_json(batches.report_dir(batch_id) / "repair_log.json", {"batch": batch_id, **log})
    write_json(batches.report_dir(batch_id) / "timings" / "repair.json", timings)
    return {"checkpoint": str(out), "weights_sha256": digest, "epochs": log["epochs_run"]}


def batch_metrics(model, ctx, ks=(20,), score=None) -> dict:
    """Retain (test, valid) and forget ranking metrics of `model` on the deletion `ctx`;
    with `score` (users -> score rows), of that ranking instead (model None)."""
    from tru.unlearning.probes import forget_eval, rank_metrics_of, retain_eval

    if model is not None:
        model.eval()
    out = {}
    for name, es in (("retain", retain_eval(ctx.data, "test")), ("retain_valid", retain_eval(ctx.data, "valid")),
                     ("forget", forget_eval(ctx.data, ctx.forget))):
        m = rank_metrics_of(model, es, ks, score=score)
        out[name] = {k: round(v, 6) if isinstance(v, float) else v for k, v in m.items()}
    return out


def evaluate_batch_stage(params: Params, batch_id: str, batches_file: str | Path | None = None) -> dict:
    """reports/<batch>/metrics.json: original, unlearned and (when run) retrain."""
    from tru import batches
    from tru.checkpoint import load_checkpoint

    ctx, _ = load_context(params, batch_id, batches_file)
    out = {"batch": batch_id, "original": batch_metrics(ctx.base, ctx)}
    for name, folder in (("unlearned", "model"), ("retrain", "retrain")):
        path = batches.BATCH_DATA / batch_id / folder
        if (path / "model.safetensors").is_file():
            model, _ = load_checkpoint(path, ctx.data.features)
            model.set_graph(ctx.data.train, ctx.data.active_items)
            out[name] = batch_metrics(model, ctx)
    seconds = {}
    for name in ("update", "repair", "retrain"):
        t = batches.report_dir(batch_id) / "timings" / f"{name}.json"
        if t.is_file():
            recorded = read_json(t)
            seconds[name] = recorded.get("total_seconds", recorded.get("seconds"))
    path = batches.report_dir(batch_id) / "metrics.json"
    write_json(path, out)
    write_json(batches.report_dir(batch_id) / "timings" / "methods.json", seconds)
    return {"metrics": str(path), "values": out, "seconds": seconds}


# --- audits -----------------------------------------------------------------------------------


def _batch_models(ctx, batch_id: str) -> dict:
    """original, unlearned (the batch's repaired model) and, when run, the reference retrain."""
    from tru import batches
    from tru.checkpoint import load_checkpoint
    from tru.errors import DataError

    models = {"original": ctx.base}
    for name, folder in (("unlearned", "model"), ("retrain", "retrain")):
        path = batches.BATCH_DATA / batch_id / folder
        if (path / "model.safetensors").is_file():
            model, _ = load_checkpoint(path, ctx.data.features)
            model.set_graph(ctx.data.train, ctx.data.active_items)
            model.eval()
            models[name] = model
        elif name == "unlearned":
            raise DataError(f"{path}: no model for batch {batch_id} (run `tru erase` and `tru repair` first)")
    return models


def audit_stage(params: Params, batch_id: str, batches_file: str | Path | None = None) -> dict:
    """reports/<batch>/audit.json and the gate: on pass the batch's model is promoted and its
    accepted requests become `erased`; on fail they become `needs_review`, the current model
    stays, and AuditGateFailed (exit status 4) names the failed checks."""
    from datetime import timedelta

    import pyarrow.parquet as pq

    from tru import batches
    from tru.audit import canary as canary_mod
    from tru.audit.gate import failure_message
    from tru.audit.run import audit_batch
    from tru.errors import AuditGateFailed
    from tru.requests.ledger import GATE_DIR, append_status, batch_time, requests_path
    from tru.requests.schema import ACCEPTED, ERASED, NEEDS_REVIEW
    from tru.train import seed_everything

    seed_everything(params.seed, params.train.threads)
    ctx, entry = load_context(params, batch_id, batches_file)
    models = _batch_models(ctx, batch_id)
    metrics_path = batches.report_dir(batch_id) / "metrics.json"  # written by `tru evaluate --batch`
    if not metrics_path.is_file():
        from tru.errors import DataError

        raise DataError(f"{metrics_path}: not found (run `tru evaluate --batch {batch_id}` first)")
    recorded = read_json(metrics_path)
    metrics = {name: recorded[name] for name in models if name in recorded}
    if set(metrics) != set(models):
        from tru.errors import DataError

        raise DataError(f"{metrics_path}: has {sorted(metrics)}, the batch has models {sorted(models)} "
                        f"(rerun `tru evaluate --batch {batch_id}`)")
    result = audit_batch(ctx, models, metrics, params, canary_mod.load(batches.sets_dir(batch_id)))
    passed = result["verdict"] == "pass"
    audit = {"batch": batch_id, "method": entry.get("method", params.unlearn.method),
             "verdict": result["verdict"], "promoted": passed,
             "current_model": batches.promoted_model(batch_id) if passed else entry["base_model"],
             **{k: v for k, v in result.items() if k != "verdict"},
             "metrics": metrics}
    path = batches.report_dir(batch_id) / "audit.json"
    write_json(path, audit)

    # the ledger: every accepted request of the batch moves on (deterministic time: the batch's)
    req = pq.read_table(requests_path(batches.LEDGER, batch_id), columns=["request_id", "status"]).to_pandas()
    ids = sorted(req.loc[req["status"] == ACCEPTED, "request_id"].tolist())
    status = ERASED if passed else NEEDS_REVIEW
    reason = None if passed else "audit gate failed: " + ", ".join(result["failed"])
    # a batch that failed before and passes now (the retrain fallback) records a review event
    # after its audit event, so the ledger keeps both; failing again changes nothing
    stage, at = "audit", batch_time(batch_id) + timedelta(seconds=1)
    earlier = batches.LEDGER / batch_id / GATE_DIR / "status-audit.parquet"
    if earlier.is_file() and set(pq.read_table(earlier, columns=["status"]).column("status").to_pylist()) == {NEEDS_REVIEW}:
        stage, at = ("review", at + timedelta(seconds=1)) if passed else (None, at)
    if stage is not None:
        append_status(batches.LEDGER, batch_id, stage, ids, status, at, reason)
    summary = {"audit": str(path), "verdict": result["verdict"], "failed": result["failed"], "requests": len(ids),
               "status": status}
    if not passed:
        raise AuditGateFailed(failure_message(batch_id, result))
    return summary


# --- evidence ---------------------------------------------------------------------------------


def report_stage(params: Params, batch_id: str, batches_file: str | Path | None = None) -> dict:
    """reports/<batch>/evidence.pdf, manifest.json and evidence.sha256 (tru/evidence)."""
    from tru.evidence import render_pdf
    from tru.evidence.layout import manifest_path

    pdf = render_pdf(batch_id, Path("."), batches_file=batches_file)
    return {"pdf": str(pdf), "sha256": sha256_file(pdf), "manifest": str(manifest_path(batch_id))}
