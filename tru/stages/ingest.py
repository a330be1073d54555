"""Ingest (`tru ingest`, the nightly flow's first step; not a DVC stage: it creates the batch
that the DVC stages then loop over)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from tru import batches, paths
from tru.config import Params
from tru.errors import DataError
from tru.requests.catalog import Catalog
from tru.requests.inbox import pending_files
from tru.requests.ingest import ingest_batch
from tru.requests.ledger import new_batch_id, parse_batch_time
from tru.requests.pseudonym import load_key


def ingest_stage(
    params: Params,
    inbox: str | Path | None = None,
    files: Sequence[str | Path] | None = None,
    now=None,
    batches_file: str | Path | None = None,
    split_dir: str | Path = paths.SPLIT,
) -> dict:
    """Take the pending inbox files (or the given `files`, copied into the inbox first) as one
    batch: validate every row, write the batch's ledger, archive the inputs, register the batch.

    `now` (a datetime or an ISO-8601 text; default: the clock) names the batch and seeds its
    erasure: a fixed time replays an inbox reproducibly. A time not after the last batch's is
    refused before anything is written. An empty inbox changes nothing. An unreadable file
    raises DataError and changes nothing. Returns ingest's summary (batch id, rows, statuses).
    """
    now = datetime.now(UTC) if now is None else parse_batch_time(now) if isinstance(now, str) else now
    inbox = Path(inbox or paths.INBOX)
    batches_file = Path(batches_file or paths.BATCHES_FILE)
    key = load_key()
    if files:
        inbox.mkdir(parents=True, exist_ok=True)
        for f in files:
            f = Path(f)
            if not f.is_file():
                raise DataError(f"{f}: no such file")
            shutil.copy2(f, inbox / f.name)
    if pending_files(inbox):
        batches.check_ready_for_next(batches_file)
        try:
            batches.check_newer(new_batch_id(now), batches_file)
        except DataError as err:
            raise DataError(f"{err}: nothing ingested (the requests stay in the inbox)") from None
    catalog = Catalog.from_dataset(params.data.dataset_dir, split_dir)
    summary = ingest_batch(inbox, paths.ARCHIVE, paths.LEDGER, catalog, key, now=now)
    if summary["batch_id"] is not None:
        summary["registered"] = batches.register_batch(
            summary["batch_id"], batches_file, model_of=batches.promoted_model, method=params.unlearn.method
        )
    return summary
