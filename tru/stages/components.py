"""The map stage: which model components the batch touches (components.json)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tru import batches, paths
from tru.checkpoint import load_checkpoint
from tru.config import Params
from tru.data.dataset import load_split, read_pairs
from tru.io import read_json, sha256_file, write_json
from tru.train import seed_everything
from tru.unlearning.components import map_components


def map_stage(params: Params, batch_id: str, batches_file: str | Path | None = None, probe_size: int = 2048) -> dict:
    """components.json: what the batch touches (counts, target items), what to rebuild, and the
    deletion heat map over modules; the seconds go to timings/map.json. Returns the path, its
    hash and the seconds."""
    entry = batches.batch_entry(batch_id, batches_file or paths.BATCHES_FILE)
    seed_everything(params.seed, params.train.threads)
    prior = load_split(entry["prior"], params.data.dataset_dir)
    sets = paths.sets_dir(batch_id)
    forget = read_pairs(sets / "forget.parquet")
    meta = read_json(sets / "split.json")
    new_items = np.setdiff1d(np.asarray(meta["deleted_items"], np.int64), prior.deleted_items)
    model, _ = load_checkpoint(entry["base_model"], prior.features)
    model.set_graph(prior.train, prior.active_items)
    components = map_components(
        model, prior.train, forget, new_items, meta["batch"]["targets"], seed=params.seed, probe_size=probe_size
    )
    seconds = components.pop("seconds")
    components["batch"] = batch_id
    components["base_model"] = entry["base_model"]
    out = paths.report_dir(batch_id) / "components.json"
    write_json(out, components)
    write_json(paths.report_dir(batch_id) / "timings" / "map.json", {"map_seconds": seconds})
    return {"components": str(out), "sha256": sha256_file(out), "seconds": seconds}
