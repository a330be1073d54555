"""Data tasks. Results are paths and hashes, never frames or tensors."""

from __future__ import annotations


from prefect import task

from tru.config import load_params
from tru import stages


@task(name="fetch", retries=2, retry_delay_seconds=10)  # the one step that touches the network
def fetch_task(params_path: str, raw_dir: str = stages.DEFAULT_PATHS["raw"]) -> dict:
    return stages.fetch_stage(load_params(params_path), raw_dir)


@task(name="featurize")
def featurize_task(params_path: str, raw_dir: str = stages.DEFAULT_PATHS["raw"], out_dir: str | None = None) -> dict:
    return stages.featurize_stage(load_params(params_path), raw_dir, out_dir)


@task(name="split")
def split_task(params_path: str, dataset_dir: str | None = None, out_dir: str = stages.DEFAULT_PATHS["split"]) -> dict:
    return stages.split_stage(load_params(params_path), dataset_dir, out_dir)


