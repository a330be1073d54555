"""Checkpoints that rebuild everything: tensors (safetensors) + config JSON + data hashes.
No pickled objects. Timings never go in: the same inputs and seed give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.torch import load_file, save_file

from tru.errors import DataError
from tru.io import atomic_path, read_json, sha256_file, write_json
from tru.models import build_backbone
from tru.models.base import Recommender

WEIGHTS = "model.safetensors"
META = "checkpoint.json"


def save_checkpoint(path: str | Path, model: Recommender, meta: dict) -> str:
    """Write `path/` (model.safetensors + checkpoint.json) atomically; returns the weights' sha256."""
    with atomic_path(path) as tmp:
        tmp.mkdir(parents=True)
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        digest = sha256_file(tmp / WEIGHTS)
        write_json(tmp / META, {"model": model.config(), "weights_sha256": digest, **meta})
    return digest


def load_checkpoint(path: str | Path, features: dict[str, np.ndarray]) -> tuple[Recommender, dict]:
    """Rebuild the model from a checkpoint folder and the dataset's features; returns it (in eval
    mode) and checkpoint.json's contents.

    The caller sets the graph (`model.set_graph(pairs)`) from the interaction set it evaluates on.
    """
    path = Path(path)
    if not (path / META).is_file() or not (path / WEIGHTS).is_file():
        raise DataError(f"{path}: not a checkpoint folder (needs {WEIGHTS} and {META}; run `tru train` first)")
    meta = read_json(path / META)
    digest = sha256_file(path / WEIGHTS)
    if digest != meta.get("weights_sha256"):
        raise DataError(
            f"{path / WEIGHTS}: sha256 {digest[:12]}… does not match checkpoint.json "
            f"({str(meta.get('weights_sha256'))[:12]}…)"
        )
    cfg = meta["model"]
    dims = {m: int(f.shape[1]) for m, f in features.items()}
    if dims != cfg["modalities"]:
        raise DataError(f"{path}: checkpoint modalities {cfg['modalities']} differ from the dataset's {dims}")
    model = build_backbone(cfg["backbone"], cfg["params"], cfg["n_users"], cfg["n_items"], features)
    model.load_state_dict(load_file(str(path / WEIGHTS)))
    model.eval()
    return model, meta
