"""The data stages: fetch the source, build the MMRec-format dataset, split it."""

from __future__ import annotations

from pathlib import Path

from tru import paths
from tru.config import Params
from tru.data.build import build_dataset, check_tracked_mmrec_dir, fetch
from tru.data.mmrec import load_folder
from tru.data.split import make_split
from tru.io import sha256_tree


def fetch_stage(params: Params, raw_dir: str | Path = paths.RAW) -> dict:
    """Download the source data into `raw_dir`; returns its folder, tree hash and fetch info.

    The pipeline's own raw folder (data/raw, a DVC output) takes an MMRec folder only from
    under data/mmrec/, the folder dvc.yaml makes a dependency (tru.data.build); elsewhere (the
    benchmarks' datasets) a folder may lie anywhere."""
    if params.data.source == "mmrec" and Path(raw_dir) == paths.RAW:
        check_tracked_mmrec_dir(params.data.mmrec_dir)
    info = fetch(params, raw_dir)
    return {"raw_dir": str(raw_dir), "sha256": sha256_tree(raw_dir), "info": info}


def featurize_stage(params: Params, raw_dir: str | Path = paths.RAW, out_dir: str | Path | None = None) -> dict:
    """Build the dataset folder (default `data.dataset_dir`) from `raw_dir`; returns its folder,
    tree hash and manifest."""
    out_dir = Path(out_dir or params.data.dataset_dir)
    manifest = build_dataset(params, raw_dir, out_dir)
    return {"dataset_dir": str(out_dir), "sha256": sha256_tree(out_dir), "manifest": manifest}


def split_stage(params: Params, dataset_dir: str | Path | None = None, out_dir: str | Path = paths.SPLIT) -> dict:
    """Split the dataset (default `data.dataset_dir`) into train/valid/test in `out_dir`
    (with the backdoor canary when enabled); returns the folder, tree hash and summary."""
    dataset_dir = Path(dataset_dir or params.data.dataset_dir)
    folder = load_folder(dataset_dir)
    summary = make_split(folder, params.split, params.seed, Path(out_dir), dataset_dir, params.canary)
    return {"split_dir": str(out_dir), "sha256": sha256_tree(out_dir), "summary": summary}
