"""Where a batch's evidence lives (paths relative to the project root; see tru/batches.py)."""

from __future__ import annotations

from pathlib import Path

from tru import batches

MANIFEST = "manifest.json"
PDF = "evidence.pdf"
SIDECAR = "evidence.sha256"  # `sha256sum -c` format: the PDF's and the manifest's own hashes
# written by the report stage itself: never inputs of the manifest
OWN_FILES = (MANIFEST, PDF, SIDECAR)


def report_dir(batch_id: str) -> Path:
    return batches.report_dir(batch_id)


def manifest_path(batch_id: str) -> Path:
    return report_dir(batch_id) / MANIFEST


def pdf_path(batch_id: str) -> Path:
    return report_dir(batch_id) / PDF


def sidecar_path(batch_id: str) -> Path:
    return report_dir(batch_id) / SIDECAR
