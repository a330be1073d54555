"""The report stage: the batch's evidence PDF and hash manifest."""

from __future__ import annotations

from pathlib import Path

from tru.config import Params
from tru.evidence import render_pdf
from tru.evidence.layout import manifest_path
from tru.io import sha256_file


def report_stage(params: Params, batch_id: str, batches_file: str | Path | None = None) -> dict:
    """reports/<batch>/evidence.pdf, manifest.json and evidence.sha256 (tru/evidence); returns
    the PDF's path and hash and the manifest's path."""
    pdf = render_pdf(batch_id, Path("."), batches_file=batches_file)
    return {"pdf": str(pdf), "sha256": sha256_file(pdf), "manifest": str(manifest_path(batch_id))}
