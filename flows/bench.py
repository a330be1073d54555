"""The nightly benchmark: one erasure batch on the default dataset from inbox to PDF through
the Prefect flow, split by step (Prefect and DVC overhead included), against retraining.

It runs in a scratch copy of the project (git + DVC initialised, the base model and split
copied in), so the real project's batches.yaml, ledger and dvc.lock are never touched.
Figures are recorded, not asserted.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from prefect import flow, task
from prefect.futures import as_completed

from flows.deployments import task_runner
from tru.bench import unlearn as bench_unlearn
from tru.bench.grid import run as grid_run
from tru.bench.grid import spec as grid_spec
from tru.bench.store import ResultsStore
from tru.config import load_params
from tru.io import write_json
from tru.requests.demo import demo_requests

COPY = ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "tru")


def _scratch_project(root: Path, dst: Path, dataset_dir: str) -> None:
    """A copy of the project at `root` in `dst`: the code, params and DVC files, the split, the
    base model and the dataset; an empty batches.yaml; git and DVC initialised."""
    for name in COPY:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst / name)
    for folder in ("data/split", "data/models/base", dataset_dir):
        shutil.copytree(root / folder, dst / folder)
    (dst / "batches.yaml").write_text("batches: []\n")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for cmd in (["git", "init", "-q"], [str(Path(shutil.which("dvc") or "dvc")), "init", "-q"]):
        subprocess.run(cmd, cwd=dst, check=True, env=env)


def bench_nightly(params_path: str | Path, out: str | Path, root: str | Path = ".") -> dict:
    """Time `erasure_batch` on the demo batch (as `make run` ingests it) and the retrain of
    the same batch; write the figures to `out` (JSON) and return them."""
    # why: the erasure flow and its stages load torch and scikit-learn; the cell runners below do not
    from flows.erasure import erasure_batch
    from tru.stages.erase import erase_stage

    root = Path(root).resolve()
    params = load_params(root / params_path)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="tru-nightly-") as tmp:
        work = Path(tmp)
        _scratch_project(root, work, params.data.dataset_dir)
        os.chdir(work)
        key = os.environ.get("TRU_PSEUDONYM_KEY")
        if key is None:  # the scratch ledger is thrown away: a throwaway key, never the project's
            os.environ["TRU_PSEUDONYM_KEY"] = secrets.token_hex(32)
        try:
            counts = demo_requests(
                params.data.dataset_dir, "data/split", "data/deletions/inbox/demo.jsonl", seed=params.seed
            )
            t0 = time.perf_counter()
            result = erasure_batch("params.yaml")
            wall = time.perf_counter() - t0
            t0 = time.perf_counter()
            erase_stage(params, result["batch"], "retrain")
            retrain = time.perf_counter() - t0
        finally:
            os.chdir(cwd)
            if key is None:
                os.environ.pop("TRU_PSEUDONYM_KEY", None)
    steps = result["seconds"]
    work_steps = {k: v for k, v in steps.items() if not k.startswith("dvc_") and k != "recover"}
    dvc = sum(v for k, v in steps.items() if k.startswith("dvc_"))
    erasure = sum(steps.get(k, 0.0) for k in ("erase", "repair"))
    summary = {
        "dataset": params.data.name,
        "backbone": params.model.backbone,
        "method": params.unlearn.method,
        "requests": counts,
        "verdict": result["verdict"],
        "wall_seconds_inbox_to_pdf": round(wall, 1),
        "steps_seconds": {k: round(v, 2) for k, v in work_steps.items()},
        "dvc_seconds": round(dvc, 2),
        "recover_seconds": round(steps.get("recover", 0.0), 2),
        "prefect_overhead_seconds": round(wall - sum(steps.values()), 1),
        "erasure_seconds": round(erasure, 1),
        "retrain_seconds": round(retrain, 1),
        "retrain_over_erasure": round(retrain / erasure, 1) if erasure else None,
        "retrain_over_whole_run": round(retrain / wall, 2),
        "environment": {"python": platform.python_version(), "cpus": mp.cpu_count(), "threads": params.train.threads},
        "notes": "erasure = TRU update + repair; the whole run adds ingest, sets, component map, evaluation, "
        "audits (membership attacks with bootstrap), the PDF, DVC bookkeeping and Prefect "
        "(an ephemeral server started by the run).",
    }
    write_json(out, summary)
    return summary


# --- benchmark cells as Prefect tasks (scale-out) -------------------------------------------------
# the cell functions are looked up in their modules when a cell runs (tests replace grid_cell there)


def _store(kind: str, out: str | Path) -> ResultsStore:
    """The results store that cells of `kind` (`unlearn` or `grid`) are recorded in, at `out`."""
    if kind == "unlearn":
        return bench_unlearn.unlearn_store(out)
    return grid_spec.results_store(out)


@task(name="bench-cell")
def bench_cell_task(kind: str, job: list) -> dict:
    """One cell, `job` its arguments as a list: `unlearn` (tru.bench.unlearn.unlearn_cell) or `grid`
    (tru.bench.grid.run.grid_cell: the cell as a list); its CSV row."""
    if kind == "unlearn":
        return bench_unlearn.unlearn_cell(*job)
    params_json, split_dir, checkpoint, cell, *rest = job  # rest: [resume]
    return grid_run.grid_cell(params_json, split_dir, checkpoint, tuple(cell), *rest)


@flow(name="bench-grid", log_prints=True)
def bench_grid(kind: str, jobs: list[list], out: str, done: list[dict]) -> int:
    """Submit every cell of `jobs`; record each in `out` as it finishes (the CSV stays
    resumable); returns the number of cells run."""
    store = _store(kind, out)
    futures = [bench_cell_task.submit(kind, job) for job in jobs]
    for fut in as_completed(futures):
        store.record(done, fut.result())
    return len(futures)


def _run(kind: str, runner: str, workers: int, jobs: list[list], out, done: list[dict]) -> None:
    """Run `jobs` as the bench-grid flow on the task runner `runner`, then reread `done` from `out`.
    Cells that run at the same time share the machine: their seconds are not comparable
    with a sequential run's."""
    if jobs:
        bench_grid.with_options(task_runner=task_runner(runner, workers))(kind, jobs, str(out), done)
        done[:] = _store(kind, out).read()  # the flow recorded into its own copy of the list


def grid_runner(runner: str, workers: int):
    """A `run_cells` for tru.bench.unlearn.bench_unlearn: the cells as tasks on the given task
    runner (thread or dask, flows/deployments.task_runner)."""

    def run_cells(params_json: str, cells: list[tuple], checkpoint: str, out: Path, done: list[dict]) -> None:
        jobs = [[params_json, regime, seed, method, checkpoint] for regime, seed, method in cells]
        _run("unlearn", runner, workers, jobs, out, done)

    return run_cells


def grid_cells_runner(runner: str, workers: int):
    """A `run_cells` for tru.bench.grid.run.run_grid (the comparison grid), likewise."""

    def run_cells(jobs: list[tuple], out: Path, done: list[dict]) -> None:
        _run(
            "grid",
            runner,
            workers,
            [[pj, split, ck, list(cell), resume] for pj, split, ck, cell, resume in jobs],
            out,
            done,
        )

    return run_cells
