"""Data tasks. Results are paths and hashes, never frames or tensors."""

from __future__ import annotations

from prefect import task

from tasks import run_logger
from tru import paths
from tru.config import load_params
from tru.stages.data import featurize_stage, fetch_stage, split_stage


@task(name="fetch", retries=2, retry_delay_seconds=10)  # the one step that touches the network
def fetch_task(params_path: str, raw_dir: str = str(paths.RAW)) -> dict:
    """tru.stages.data.fetch_stage: the raw dataset into `raw_dir`; its summary."""
    log = run_logger()
    s = fetch_stage(load_params(params_path), raw_dir)
    log.info(f"fetched into {s['raw_dir']} (sha256 {s['sha256'][:12]}…)")
    return s


@task(name="featurize")
def featurize_task(params_path: str, raw_dir: str = str(paths.RAW), out_dir: str | None = None) -> dict:
    """tru.stages.data.featurize_stage: the dataset (interactions, modality features); its summary."""
    log = run_logger()
    s = featurize_stage(load_params(params_path), raw_dir, out_dir)
    log.info(f"dataset in {s['dataset_dir']}")
    return s


@task(name="split")
def split_task(params_path: str, dataset_dir: str | None = None, out_dir: str = str(paths.SPLIT)) -> dict:
    """tru.stages.data.split_stage: the train/valid/test split into `out_dir` (validated by Great
    Expectations); its summary."""
    log = run_logger()
    s = split_stage(load_params(params_path), dataset_dir, out_dir)
    log.info(f"split in {s['split_dir']}: {s['summary'].get('counts')}")
    return s
