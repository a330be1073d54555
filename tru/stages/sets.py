"""The sets stage: a batch's forget and retain sets."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from tru import batches, paths
from tru.config import Params
from tru.io import sha256_tree
from tru.requests.ledger import batch_metadata, requests_path
from tru.requests.sets import build_sets


def sets_stage(params: Params, batch_id: str, batches_file: str | Path | None = None) -> dict:
    """Forget / retain sets of a batch from its ledger and the sets its predecessor left
    (cumulative); returns the folder, its tree hash and the batch's counts. DataError when the
    data changed since the batch was ingested (tru.requests.ledger.check_same_dataset)."""
    entry = batches.batch_entry(batch_id, batches_file or paths.BATCHES_FILE)
    requests = pq.read_table(requests_path(paths.LEDGER, batch_id)).to_pandas()
    dataset = batch_metadata(paths.LEDGER, batch_id).get("dataset")
    out = paths.sets_dir(batch_id)
    meta = build_sets(entry["prior"], requests, batch_id, out, dataset)
    return {"sets_dir": str(out), "sha256": sha256_tree(out), "batch": meta["batch"]}
