"""Running the grid: each dataset prepared once under `root/<dataset>/` (its MMRec folder, its
split, one base model per backbone) and reused while its inputs are unchanged, then every cell
not yet in the results CSV, each in a fresh child process, then the report.

A cell is one deletion drawn with its seed (tru.bench.unlearn.regime_context), erased by one
method (tru.bench.unlearn.erase_variant: the method, then the final repair for approximate
ones), and measured: retain and forget Recall@20/NDCG@20 (docs: Audits and evidence), the membership
attack (tru.audit.mia, the same attack `tru audit` runs), the backdoor attack success rate when
the dataset carries the canary, seconds and peak RSS. The `popularity` reference cell ranks by
the retained items' training counts: ranking metrics only, no model to attack.

The `pipeline` dataset is the default pipeline's own split (data/split) and base model, as the
other benchmarks use them.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from tru import paths
from tru.audit import canary as canary_mod
from tru.bench.grid.methods import BASE_FREE
from tru.bench.grid.report import write_report
from tru.bench.grid.spec import (
    DatasetSpec,
    Grid,
    bases_path,
    pending,
    results_store,
    timings_path,
    validation_reasons,
)
from tru.bench.process import host_cpu, in_child, peak_rss_mb
from tru.bench.store import file_lock
from tru.bench.unlearn import bench_base_model, canary_backdoor, erase_variant, regime_context
from tru.config import Params, TrainParams, with_backbone
from tru.data.synth import SCALES
from tru.errors import ConfigError, DataError
from tru.io import read_json, write_json
from tru.metrics import popularity_scores
from tru.stages.data import featurize_stage, fetch_stage, split_stage

# --------------------------------------------------------------------------- datasets


def _dataset_params(params: Params, name: str, spec: DatasetSpec) -> Params:
    """The params a dataset is prepared and trained with: the pipeline's, with the dataset's
    source and the canary switch of the grid."""
    raw = params.model_dump()
    if spec.source != "pipeline":
        raw["data"] = {**raw["data"], "source": spec.source, "name": name, "mmrec_dir": spec.mmrec_dir}
        if spec.source == "synthetic" and spec.scale != "params":
            raw["synthetic"] = SCALES[spec.scale].model_dump()
    raw["canary"] = {**raw["canary"], "enabled": spec.canary}
    return Params.model_validate(raw)


def with_train(params: Params, spec: DatasetSpec) -> Params:
    """`params` with the dataset's train overrides for its backbone, validated again (a bad
    value is an error naming it). The base model's checkpoint records the recipe, so a changed
    override trains it again."""
    over = spec.train.get(params.model.backbone)
    if not over:
        return params
    try:
        train = TrainParams.model_validate({**params.train.model_dump(), **over})
    except ValidationError as err:
        raise ConfigError(f"grid dataset train.{params.model.backbone}: {validation_reasons(err)}") from None
    return params.model_copy(update={"train": train})


def prepare_dataset(params: Params, name: str, spec: DatasetSpec, root: str | Path) -> tuple[Params, Path]:
    """The dataset's params and split folder, built under root/<name>/ unless already there
    from the same inputs (a stamp holds what they were)."""
    p = _dataset_params(params, name, spec)
    if spec.source == "pipeline":
        split = paths.SPLIT
        if not (split / "split.json").is_file():
            raise DataError(f"{split} is missing: run `make run` (or `dvc repro split`) before the grid")
        if bool(read_json(split / "split.json").get("canary")) != spec.canary:
            raise DataError(
                f"dataset {name!r}: canary: {str(spec.canary).lower()} in the grid, but the pipeline's "
                f"split was built with canary.enabled {str(not spec.canary).lower()}"
            )
        return p, split
    folder = Path(root) / name
    stamp_path = folder / "prepared.json"
    # in JSON form, as the stamp file holds it (a tuple field dumped as is never equals its list);
    # the train overrides shape the base models (their checkpoints record the recipe), not the data
    stamp = {"spec": spec.model_dump(mode="json", exclude={"train"}), "seed": p.seed} | {
        k: getattr(p, k).model_dump(mode="json") for k in ("data", "synthetic", "featurize", "fetch", "split", "canary")
    }
    split = folder / "split"
    if stamp_path.is_file() and read_json(stamp_path) == stamp and (split / "split.json").is_file():
        return p, split
    print(f"preparing dataset {name} ({spec.label}) under {folder}", flush=True)
    raw_dir, ds = folder / "raw", folder / "dataset"
    fetch_stage(p, raw_dir)
    featurize_stage(p, raw_dir, ds)
    split_stage(p, ds, split)
    write_json(stamp_path, stamp)
    return p, split


def base_checkpoint(
    params: Params, name: str, spec: DatasetSpec, split: Path, root: str | Path, pipeline_backbone: str
) -> str:
    """The base model a dataset's cells start from (trained once per backbone), as a folder. The
    pipeline dataset's is the pipeline's own for its backbone, as the other benchmarks use."""
    if spec.source == "pipeline":
        # the pipeline's own model, unless the grid trains this backbone with another recipe
        if params.model.backbone == pipeline_backbone and not spec.train.get(pipeline_backbone):
            if not (paths.BASE_MODEL / "checkpoint.json").is_file():
                raise DataError(f"{paths.BASE_MODEL} is missing: run `make run` (or `dvc repro train`) before the grid")
            return str(paths.BASE_MODEL)
        return bench_base_model(params, split, paths.BENCH_SCRATCH)
    return bench_base_model(params, split, Path(root) / name)


# --------------------------------------------------------------------------- one cell


def cooccurring_items(train: np.ndarray, deleted: np.ndarray, n_items: int, per_item: int = 10) -> np.ndarray:
    """The retained items most tied to the `deleted` ones in `train` (the data before the
    deletion): for each deleted item, the `per_item` other items that share the most users with
    it (ties: lower item first), deleted items left out. What an item-level deletion changes
    in what users are served: these items' exposure after it, next to Retrain's."""
    deleted = np.asarray(deleted, np.int64)
    if len(deleted) == 0:
        return np.zeros(0, np.int64)
    out: set[int] = set()
    for i in deleted:
        users = np.unique(train[train[:, 1] == i, 0])
        shared = np.bincount(train[np.isin(train[:, 0], users), 1], minlength=n_items)
        shared[deleted] = 0
        order = np.lexsort((np.arange(n_items), -shared))
        out.update(int(j) for j in order[:per_item] if shared[j] > 0)
    return np.asarray(sorted(out), np.int64)


def _forget_recall(model, ctx, pairs: np.ndarray, score=None) -> float | None:
    """Forget Recall@20 on a subset of the forgotten pairs (None when it is empty)."""
    from tru.unlearning.probes import forget_eval, rank_metrics_of

    if len(pairs) == 0:
        return None
    return round(float(rank_metrics_of(model, forget_eval(ctx.data, pairs), (20,), score=score)["recall@20"]), 6)


def _grid_cell(
    params_json: str,
    split_dir: str,
    checkpoint: str,
    dataset: str,
    regime: str,
    seed: int,
    method: str,
    resume: str | None = None,
) -> dict:
    """One cell in this process (grid_cell runs it in a child): the deletion drawn with `seed`,
    erased by `method`, measured; its CSV row. `resume`: the exact methods' snapshot folder."""
    # why: they load scikit-learn, which `tru bench grid --list` and --report-only do not need
    from tru.audit.mia import best_balanced_accuracy
    from tru.audit.run import context_membership
    from tru.stages.context import batch_metrics

    params = Params.model_validate_json(params_json)
    canary = canary_mod.load(split_dir)
    # with a canary, a user-level deletion also deletes its fake users: the attack success
    # rate then says whether the erasure removed the backdoor
    ctx = regime_context(params, regime, seed, split_dir, checkpoint, delete_canary=bool(canary) and regime == "user")
    ctx.resume = None if resume is None else Path(resume)
    run: dict  # erase_variant's: the model (none for popularity), seconds, epochs, repair epochs
    # the popularity reference's ranking (no model), built once for every metric of the cell
    score = popularity_scores(ctx.data.train, ctx.data.n_items) if method == "popularity" else None
    if method == "popularity":  # a ranking, not a model: no audit to run, nothing timed
        run, mia, model = {"seconds": 0.0, "epochs": 0, "repair_epochs": 0}, None, None
        m = batch_metrics(None, ctx, score=score)
    else:
        run = erase_variant(params, ctx, method)
        model = run["model"]
        if method != "original":
            model.set_graph(ctx.data.train, ctx.data.active_items)
        model.eval()
        m = batch_metrics(model, ctx)
        ap = params.audit
        mia = context_membership({"model": model}, ctx, ap.mia)["models"].get("model")
    split_forget = {}
    if canary and regime == "user":
        fake_pair = np.isin(ctx.forget[:, 0], np.asarray(canary["fake_users"], np.int64))
        split_forget = {
            "real": _forget_recall(model, ctx, ctx.forget[~fake_pair], score),
            "fake": _forget_recall(model, ctx, ctx.forget[fake_pair], score),
        }
    served = None
    if regime == "item" and method != "popularity":
        from tru.audit.measures import exposure

        tied = cooccurring_items(ctx.prior.train, ctx.new_items, ctx.data.n_items)
        served = exposure(
            model, tied, ctx.normal_users, ctx.data.train, ctx.data.n_users, ctx.data.candidates, params.audit.k
        )["mean_per_user"]
    bd = {}
    if canary and regime == "user" and method != "popularity":
        bd = canary_backdoor(model, ctx, canary, ap.k)
    row = {
        "dataset": dataset,
        "backbone": params.model.backbone,
        "regime": regime,
        "seed": seed,
        "method": method,
        "retain_recall@20": m["retain"]["recall@20"],
        "retain_ndcg@20": m["retain"]["ndcg@20"],
        "forget_recall@20": m["forget"]["recall@20"],
        "forget_ndcg@20": m["forget"]["ndcg@20"],
        "forget_real_recall@20": split_forget.get("real"),
        "forget_fake_recall@20": split_forget.get("fake"),
        "served_exposure@20": served,
        "mia_balanced_accuracy": None if mia is None else best_balanced_accuracy(mia),
        "backdoor_asr": bd.get("asr"),
        "backdoor_lift": bd.get("lift"),
        "seconds": round(run["seconds"], 2),
        "peak_rss_mb": round(peak_rss_mb()),
        "epochs": run["epochs"],
        "repair_epochs": run["repair_epochs"],
        "forget_pairs": int(len(ctx.forget)),
        "users": int(ctx.data.n_users),
        "items": int(ctx.data.n_items),
        "train_interactions": int(len(ctx.prior.train)),
    }
    if resume is not None:  # the row is complete: a rerun of this cell starts afresh
        shutil.rmtree(resume, ignore_errors=True)
    return row


def grid_cell(params_json: str, split_dir: str, checkpoint: str, cell: tuple, resume: str | None = None) -> dict:
    """One cell (a KEY tuple) in a fresh child process (its peak RSS is its own): its CSV row.
    With `resume` (a folder), exact methods snapshot their training there and a killed cell
    continues from it."""
    dataset, _, regime, seed, method = cell
    return in_child(_grid_cell, params_json, split_dir, checkpoint, dataset, regime, int(seed), method, resume)


def record_part(
    out: str | Path,
    only: dict[str, list[str]] | None,
    cells: int,
    seconds: float,
    threads: int,
    prepare_seconds: float | None = None,
) -> None:
    """Append one part of the grid to the timings file: a run's `--only` filter, the cells it
    ran, the wall seconds running them (their evaluation and UltraRE's shard ensembles
    included), the seconds before them preparing datasets and base models (near 0 where this
    host had them already), the training threads and the host's CPU. Parts of one grid may
    run on different hosts: their seconds compare only on the same kind of CPU."""
    path = timings_path(out)
    part = ",".join(f"{k}={'+'.join(map(str, v))}" for k, v in (only or {}).items()) or "(all)"
    with file_lock(path):  # another part may finish beside this one
        parts = read_json(path) if path.is_file() else []
        parts.append(
            {"part": part, "cells": cells, "seconds": round(seconds, 1), "threads": threads, "host": host_cpu()}
            | ({} if prepare_seconds is None else {"prepare_seconds": round(prepare_seconds, 1)})
        )
        write_json(path, parts)


# the measures an `original` cell re-scored must repeat for its base model to be the one recorded
SAME_BASE_COLUMNS = ("retain_recall@20", "retain_ndcg@20", "forget_recall@20", "forget_ndcg@20")


def check_bases(
    out: str | Path, done: list[dict], params_json: str, split_dir: str, checkpoint: str, cells: list[tuple]
) -> None:
    """Refuse to add cells to a seed whose recorded cells started from another base model: the
    grid compares a seed's methods with one another, and a base model trained again (on another
    host, or after its recipe changed) scores apart by as much as Retrain's own noise. The grid
    records, beside its CSV (bases_path), the base model's digest per dataset, backbone, regime
    and seed once cells of it ran; a seed recorded before that record existed is checked once by
    scoring its `original` cell again from `checkpoint`. Cells that start from no base model
    (BASE_FREE) are left out, and so is a seed with no recorded cell that started from a base
    model (its rows removed to run them again). Raises DataError naming the seed, the two
    models' scores and the ways out; else records the digest for `cells`' seeds."""
    path = bases_path(out)
    # the weights' sha256 its checkpoint.json records (loading the checkpoint checks it)
    digest = str(read_json(Path(checkpoint) / "checkpoint.json")["weights_sha256"])[:16]
    recorded = {tuple(str(r[k]) for k in ("dataset", "backbone", "regime", "seed", "method")): r for r in done}
    seeds = sorted({c[:4] for c in cells if c[4] not in BASE_FREE}, key=str)
    way_out = (
        f"Restore that base model (on the host that trained it), or remove the seed's rows of every method "
        f"that starts from it (all but {', '.join(BASE_FREE)}) from {out}, with no part of the grid running (a "
        "running part writes back the rows it read), and run them again"
    )
    with file_lock(path):  # another part may record its seeds beside this one
        bases = read_json(path) if path.is_file() else {}
        for setting in seeds:
            key = "/".join(map(str, setting))
            started = [r for k, r in recorded.items() if k[:4] == tuple(map(str, setting)) and k[4] not in BASE_FREE]
            if key in bases and started and bases[key] != digest:
                raise DataError(
                    f"{key}: the base model at {checkpoint} (digest {digest}) is not the one this seed's "
                    f"recorded cells started from ({bases[key]}): new cells would be compared with cells of "
                    f"another model. {way_out}"
                )
            before = next((r for r in started if r["method"] == "original"), None)
            if key not in bases and before is not None:
                print(f"{key}: checking that the base model is the one its recorded cells used", flush=True)
                now = grid_cell(params_json, split_dir, checkpoint, (*setting, "original"))
                apart = [c for c in SAME_BASE_COLUMNS if abs(float(now[c]) - float(before[c])) > 1e-4]
                if apart:
                    scores = "; ".join(f"{c} {float(now[c]):.4f} against {float(before[c]):.4f}" for c in apart)
                    raise DataError(
                        f"{key}: the base model at {checkpoint} is not the one this seed's recorded cells "
                        f"started from (its original re-scored against the recorded: {scores}): new cells would "
                        f"be compared with cells of another model. {way_out}"
                    )
            bases[key] = digest
        if seeds:
            write_json(path, bases)


def resume_folder(root: str | Path, cell: tuple) -> str:
    """Where a cell's exact methods keep their resume snapshots (under the grid's root)."""
    return str(Path(root) / "resume" / "-".join(str(v) for v in cell))


# --------------------------------------------------------------------------- the grid


def run_grid(
    params: Params, grid: Grid, only: dict[str, list[str]] | None = None, run_cells=None, report: bool = True
) -> list[dict]:
    """Run every cell of `grid` not yet in its CSV (optionally only those matching `only`:
    column -> allowed values), dataset by dataset; then write the report. Returns the rows
    recorded (those read at the start and those this run added).

    `run_cells(jobs, out, done)` runs a list of (params_json, split_dir, checkpoint, cell, resume)
    and records each with results_store(out).record; default: one after another here.
    flows/bench.py runs them as Prefect tasks on a configurable task runner."""
    out = Path(grid.out)
    store = results_store(out)
    done = store.read()
    todo = pending(grid, done, only)
    print(f"grid: {len(grid.cells())} cells, {len(store.finished(done))} done, {len(todo)} to run now", flush=True)
    by_setup: dict[tuple, list[tuple]] = {}
    for c in todo:
        by_setup.setdefault((c[0], c[1]), []).append(c)
    jobs = []
    t_prepare = time.perf_counter()
    for (dataset, backbone), cells in by_setup.items():
        spec = grid.datasets[dataset]
        p, split = prepare_dataset(params, dataset, spec, grid.root)
        p = with_train(with_backbone(p, backbone), spec)
        checkpoint = base_checkpoint(p, dataset, spec, split, grid.root, params.model.backbone)
        check_bases(out, done, p.model_dump_json(), str(split), checkpoint, cells)
        jobs += [(p.model_dump_json(), str(split), checkpoint, c, resume_folder(grid.root, c)) for c in cells]
    t0 = time.perf_counter()
    prepare_seconds = t0 - t_prepare
    if run_cells is None:
        for pj, split_dir, ck, c, resume in jobs:
            store.record(done, grid_cell(pj, split_dir, ck, c, resume))
    else:
        run_cells(jobs, out, done)
    if jobs:
        record_part(out, only, len(jobs), time.perf_counter() - t0, params.train.threads, prepare_seconds)
    if report:
        write_report(store.read(), grid, out.parent)
    return done
