"""Model tasks: training and evaluation over tru.stages."""

from __future__ import annotations

from prefect import task

from tasks import run_logger
from tru import paths
from tru.config import load_params
from tru.stages.model import evaluate_stage, train_stage


@task(name="train")
def train_task(
    params_path: str,
    split_dir: str = str(paths.SPLIT),
    out_dir: str = str(paths.BASE_MODEL),
    log_path: str = str(paths.TRAIN_LOG),
) -> dict:
    """tru.stages.model.train_stage: the base model trained on the split into `out_dir`; its summary."""
    log = run_logger()
    s = train_stage(load_params(params_path), split_dir, out_dir, log_path, progress=False)
    log.info(f"wrote {s['checkpoint']} (sha256 {s['weights_sha256'][:12]}…)")
    return s


@task(name="evaluate")
def evaluate_task(
    params_path: str,
    checkpoint: str = str(paths.BASE_MODEL),
    split_dir: str = str(paths.SPLIT),
    out_path: str = str(paths.BASE_METRICS),
) -> dict:
    """tru.stages.model.evaluate_stage: the checkpoint's metrics into `out_path`; their summary."""
    log = run_logger()
    s = evaluate_stage(load_params(params_path), checkpoint, split_dir, out_path)
    log.info(f"wrote {out_path}")
    return s
