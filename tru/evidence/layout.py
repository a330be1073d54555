"""Where a batch's evidence lives (paths relative to the project root; see tru/batches.py)."""

from __future__ import annotations

from pathlib import Path

from tru import paths

MANIFEST = "manifest.json"
PDF = "evidence.pdf"
SIDECAR = "evidence.sha256"  # `sha256sum -c` format: the PDF's and the manifest's own hashes
# the signed statement over the manifest's files, the manifest and the PDF, and its detached
# Ed25519 signature (tru/evidence/signing.py): written after the report stage, by the flows
STATEMENT = "evidence.statement.json"
SIGNATURE = "evidence.statement.sig"
# written by the report stage itself, or signed after it: never inputs of the manifest
OWN_FILES = (MANIFEST, PDF, SIDECAR, STATEMENT, SIGNATURE)
# wall-clock seconds of the batch's stages (tru/stages/context.py:split_timings moves them out
# of the logs): different on every run, so never in the manifest or the PDF; dvc.yaml declares
# them plain outputs (`cache: false`), not metrics
TIMINGS = "timings"
# the nightly benchmark: wall-clock seconds measured under fixed conditions (not per batch)
NIGHTLY_BENCH = Path("reports/bench/nightly_ml100k.json")


def report_dir(batch_id: str) -> Path:
    """The batch's report folder, reports/<batch_id>."""
    return paths.report_dir(batch_id)


def manifest_path(batch_id: str) -> Path:
    """reports/<batch_id>/manifest.json."""
    return report_dir(batch_id) / MANIFEST


def pdf_path(batch_id: str) -> Path:
    """reports/<batch_id>/evidence.pdf."""
    return report_dir(batch_id) / PDF


def sidecar_path(batch_id: str) -> Path:
    """reports/<batch_id>/evidence.sha256 (the PDF's and the manifest's hashes)."""
    return report_dir(batch_id) / SIDECAR


def timings_dir(batch_id: str) -> Path:
    """reports/<batch_id>/timings/ (the stages' wall-clock seconds)."""
    return report_dir(batch_id) / TIMINGS


def is_timing(path: str | Path, batch_id: str) -> bool:
    """Whether `path` (relative to the root) is one of the batch's wall-clock timing files."""
    return timings_dir(batch_id) in Path(path).parents
