"""Gather one batch's evidence from its files (every path relative to `root`).

components.json, metrics.json and audit.json are required; every other file is optional and
shows as "not run" in the PDF. Ledger rows pass through `public_view` and then a whitelist of
columns, so no raw id, request id or requester's text can reach the HTML or the PDF.

Only what a rerun of the batch's stages reproduces is read: never the wall-clock timings
(reports/<B>/timings/), the git commit or the remote's URL, nor anything of the machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from tru import paths
from tru.errors import DataError
from tru.evidence import layout, signing
from tru.evidence.lineage import dvc_stages, repro_stages
from tru.evidence.manifest import build_manifest
from tru.requests.ledger import (
    batch_time,
    check_batch_id,
    iso_utc,
    public_view,
    read_ledger,
    requests_path,
)
from tru.requests.schema import KINDS, STATUSES

REQUIRED = ("components", "metrics", "audit")
OPTIONAL = ("update_log", "repair_log", "retrain_log")
# the only ledger columns the evidence keeps (after public_view): a new ledger column stays
# out of the PDF until someone decides it is safe
PUBLIC_FIELDS = ("kind", "subject", "status", "reason", "received_at", "status_at", "stage", "duplicate_target")
PARAM_SECTIONS = ("seed", "unlearn", "repair", "audit", "evaluate")
LEDGER_READ = ["batch_id", "kind", "subject", "status", "reason", "received_at", "status_at", "stage", "duplicate_of"]
MAX_REQUEST_ROWS = 200  # rows listed in the PDF; the counts cover every row


def _read(path: Path, required: bool) -> Any:
    if not path.is_file():
        if required:
            raise DataError(f"{path}: missing; the evidence of a batch needs it (run the batch's stages first)")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err.__class__.__name__})") from None


def _plain(value: Any) -> Any:
    """pandas/NumPy scalars, NaN and NA -> JSON-like Python values."""
    if value is None or (not isinstance(value, (str, bytes, list, dict)) and pd.isna(value)):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    return value


def ledger_rows(batch_id: str, root: Path, limit: int | None = MAX_REQUEST_ROWS) -> tuple[list[dict], dict]:
    """The batch's first `limit` ledger rows (public columns only, in ledger order) and the
    counts of all its rows by kind and status."""
    # only what public_view keeps (and duplicate_of, which it turns into a flag): raw ids and
    # the requesters' text are not even read
    ledger = read_ledger(root / paths.LEDGER, columns=LEDGER_READ)
    public = public_view(ledger[ledger["batch_id"] == batch_id])
    cols = [c for c in PUBLIC_FIELDS if c in public.columns]
    shown = public[cols] if limit is None else public[cols].head(limit)
    rows = [{c: _plain(v) for c, v in zip(cols, row)} for row in shown.itertuples(index=False, name=None)]
    pairs = public.groupby(["kind", "status"]).size() if len(public) else {}
    return rows, request_counts({k: int(n) for k, n in dict(pairs).items()})


def request_counts(pairs: dict[tuple[str, str], int]) -> dict:
    """(kind, status) -> count as a table kind -> status -> count, with every known kind and
    status (zeros included)."""
    kinds = list(KINDS) + sorted({k for k, _ in pairs} - set(KINDS))
    statuses = list(STATUSES) + sorted({s for _, s in pairs} - set(STATUSES))
    table = {k: {s: 0 for s in statuses} for k in kinds}
    for (k, s), n in pairs.items():
        table[k][s] += n
    return {
        "kinds": kinds,
        "statuses": statuses,
        "table": table,
        "by_status": {s: sum(table[k][s] for k in kinds) for s in statuses},
        "total": sum(pairs.values()),
    }


def _params(stages: dict, root: Path) -> dict:
    """Params the batch's stages ran with: dvc.lock's record, else params.yaml now."""
    used: dict = {}
    for stage in stages.values():
        for values in (stage.get("params") or {}).values():
            if isinstance(values, dict):
                used.update(values)
    if used:
        return {"source": "dvc.lock", "values": dict(sorted(used.items()))}
    path = root / "params.yaml"
    if path.is_file():
        data = yaml.safe_load(path.read_text()) or {}
        picked = {k: data[k] for k in PARAM_SECTIONS if k in data}
        if picked:
            return {"source": "params.yaml", "values": picked}
    return {"source": None, "values": {}}


def _lifecycle(root: Path) -> dict:
    """The `lifecycle` params (the report stage depends on them), from params.yaml: what the
    section on where the data still exists says about retention. {} without the section."""
    path = root / "params.yaml"
    data = (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}
    section = data.get("lifecycle") if isinstance(data, dict) else None
    return dict(section) if isinstance(section, dict) else {}


def collect(batch_id: str, root: str | Path = Path("."), batches_file: str | Path | None = None) -> dict:
    """Everything the evidence of batch `batch_id` shows, read from the files under `root`."""
    check_batch_id(batch_id)
    root = Path(root)
    rep = root / layout.report_dir(batch_id)
    files = {name: _read(rep / f"{name}.json", True) for name in REQUIRED}
    files.update({name: _read(rep / f"{name}.json", False) for name in OPTIONAL})
    stages = dvc_stages(batch_id, root)
    rows, counts = ledger_rows(batch_id, root)
    manifest = build_manifest(batch_id, root, batches_file)
    return {
        "batch": batch_id,
        "batch_time": iso_utc(batch_time(batch_id)),
        **files,
        "requests": rows,
        "request_counts": counts,
        "manifest": manifest,
        "code_digest": manifest["code_digest"],
        # the key that signs this evidence after it is rendered, as the ledger recorded it at ingest
        "signing_key": signing.recorded_fingerprint(batch_id, root),
        "dvc_stages": stages,
        "repro_stages": repro_stages(stages),
        # the params the erasure ran with (the report's own stage is recorded only after it renders)
        "params": _params({k: v for k, v in stages.items() if not k.startswith("report@")}, root),
        "lifecycle": _lifecycle(root),
        "paths": {
            "pdf": layout.pdf_path(batch_id).as_posix(),
            "manifest": layout.manifest_path(batch_id).as_posix(),
            "sidecar": layout.sidecar_path(batch_id).as_posix(),
            "timings": layout.timings_dir(batch_id).as_posix(),
            "bench": layout.NIGHTLY_BENCH.as_posix(),
            "ledger_pointer": f"{requests_path(paths.LEDGER, batch_id).as_posix()}.dvc",
        },
    }
