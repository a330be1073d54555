"""Model tasks: training and evaluation over tru.stages."""

from __future__ import annotations

from prefect import task

from tru import stages
from tru.config import load_params


@task(name="train")
def train_task(params_path: str, split_dir: str = stages.DEFAULT_PATHS["split"],
               out_dir: str = stages.DEFAULT_PATHS["model"], log_path: str = stages.DEFAULT_PATHS["train_log"]) -> dict:
    return stages.train_stage(load_params(params_path), split_dir, out_dir, log_path, progress=False)


@task(name="evaluate")
def evaluate_task(params_path: str, checkpoint: str = stages.DEFAULT_PATHS["model"],
                  split_dir: str = stages.DEFAULT_PATHS["split"], out_path: str = stages.DEFAULT_PATHS["metrics"]) -> dict:
    return stages.evaluate_stage(load_params(params_path), checkpoint, split_dir, out_path)
