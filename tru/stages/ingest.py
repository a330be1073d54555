"""Ingest (`tru ingest`, the nightly flow's first step; not a DVC stage: it creates the batch
that the DVC stages then loop over)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from tru import batches, paths
from tru.config import Params
from tru.errors import ConfigError, DataError
from tru.evidence import signing
from tru.requests.backdoors import declaration_name
from tru.requests.catalog import Catalog
from tru.requests.inbox import copy_into_inbox, pending_files, quarantine_dir_for
from tru.requests.ingest import ingest_batch
from tru.requests.ledger import batch_metadata, check_same_dataset, new_batch_id, parse_batch_time, requests_path
from tru.requests.pseudonym import key_fingerprint, load_key

log = logging.getLogger(__name__)


def ingest_stage(
    params: Params,
    inbox: str | Path | None = None,
    files: Sequence[str | Path] | None = None,
    now=None,
    batches_file: str | Path | None = None,
    split_dir: str | Path = paths.SPLIT,
    backdoors: Sequence[str | Path] | None = None,
) -> dict:
    """Take the pending inbox files (or the given `files`, copied into the inbox first) as one
    batch: validate every row, write the batch's ledger, archive the inputs, register the batch.

    `now` (a datetime or an ISO-8601 text; default: the clock) names the batch and seeds its
    erasure: a fixed time replays an inbox reproducibly. A time not after the last batch's is
    refused before anything is written. A given file never overwrites a pending one: it is
    copied under a free name (`<stem>-2<suffix>`, ...; `copied` in the summary maps each given
    path to its inbox name); a given file that cannot be opened is refused (DataError) before
    anything is copied. Files that cannot be read, symlinks and folders go to
    `<inbox>/../quarantine/<batch id>/` with a reason file and a warning, and the rest is
    ingested. An inbox without a request row creates no batch (batch_id None).
    `backdoors`: backdoor declarations (tru.requests.backdoors), copied into the inbox as
    `backdoors-<name>` (their own name when it starts with `backdoors`), as `files` are.
    Returns ingest's summary (batch id, rows, statuses, quarantined, skipped, backdoors).
    """
    now = datetime.now(UTC) if now is None else parse_batch_time(now) if isinstance(now, str) else now
    inbox = Path(inbox or paths.INBOX)
    batches_file = Path(batches_file or paths.BATCHES_FILE)
    key = load_key()
    copied: dict[str, str] = {}
    given = [(Path(f), Path(f).name) for f in files or ()]
    given += [(Path(f), declaration_name(Path(f).name)) for f in backdoors or ()]
    if given:
        for f, name in given:  # all of them before copying any
            if not f.is_file():
                raise DataError(f"{f}: {'not a regular file' if f.exists() else 'no such file'}; nothing copied")
            try:
                with open(f, "rb"):
                    pass
            except OSError as err:
                raise DataError(
                    f"{f}: cannot be read ({err.strerror or err.__class__.__name__}); nothing copied"
                ) from None
            if name != f.name and _pending(f, inbox):
                raise DataError(
                    f"{f}: a backdoor declaration in the inbox under a request file's name; rename it {name} "
                    "(declarations are named backdoors*); nothing copied"
                )
        for f, name in given:
            if _pending(f, inbox):
                copied[str(f)] = f.name  # already pending: copying it would ingest it twice
                continue
            dst = copy_into_inbox(f, inbox, name)
            copied[str(f)] = dst.name
            if dst.name != name:
                log.warning("%s: the inbox already holds a file of that name; copied as %s", f, dst.name)
    if pending_files(inbox):
        batches.check_ready_for_next(batches_file)
        try:
            batches.check_newer(new_batch_id(now), batches_file)
        except DataError as err:
            raise DataError(f"{err}: nothing ingested (the requests stay in the inbox)") from None
    catalog = Catalog.from_dataset(params.data.dataset_dir, split_dir)
    if pending_files(inbox):
        check_dataset_unchanged(catalog, batches_file)
        check_key_unchanged(key, batches_file)
    summary = ingest_batch(
        inbox,
        paths.ARCHIVE,
        paths.LEDGER,
        catalog,
        key,
        now=now,
        quarantine_dir=quarantine_dir_for(inbox),
        signing_key=signing.configured_fingerprint(),
    )
    if copied:
        summary["copied"] = copied
    if summary["batch_id"] is not None:
        summary["registered"] = batches.register_batch(
            summary["batch_id"], batches_file, model_of=batches.promoted_model, method=params.unlearn.method
        )
    return summary


def _pending(f: Path, inbox: Path) -> bool:
    """Whether the given file is itself waiting in the inbox."""
    return inbox.is_dir() and os.path.samefile(f.parent, inbox) and not f.is_symlink()


def check_dataset_unchanged(catalog: Catalog, batches_file: Path) -> None:
    """DataError when the last registered batch was ingested against another dataset than
    `catalog`'s: new requests would be resolved in the new dataset and then erased from the
    last batch's model, trained on the old one. A batch whose ledger is not on disk (a clone
    before `dvc pull`) or recorded no dataset is not checked."""
    registered = batches.read_batches(batches_file)
    if not registered:
        return
    last = registered[-1]["id"]
    if not requests_path(paths.LEDGER, last).is_file():
        return
    recorded = batch_metadata(paths.LEDGER, last).get("dataset")
    check_same_dataset(last, recorded, catalog.dataset, "nothing ingested (the requests stay in the inbox)")


def check_key_unchanged(key: bytes, batches_file: Path) -> None:
    """ConfigError when the pseudonymisation key is not the one the last registered batch was
    ingested with (the ledger records its fingerprint): with another key the same person gets
    another pseudonym, and an erased subject would no longer be recognised as already erased.
    A batch whose ledger is not on disk or recorded no fingerprint is not checked."""
    registered = batches.read_batches(batches_file)
    if not registered or not requests_path(paths.LEDGER, registered[-1]["id"]).is_file():
        return
    last = registered[-1]["id"]
    recorded = batch_metadata(paths.LEDGER, last).get("pseudonym_key")
    now = key_fingerprint(key)
    if recorded and recorded != now:
        raise ConfigError(
            f"the pseudonymisation key is not the one batch {last} was ingested with (fingerprint "
            f"{recorded[:16]}…, now {now[:16]}…): the same person would get another pseudonym. Restore the "
            "key ($TRU_PSEUDONYM_KEY or .tru-secret); nothing ingested (the requests stay in the inbox)"
        )
