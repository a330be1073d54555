"""Compliance evidence of a deletion batch: collect it from the batch's files, hash every
artifact into a manifest, render a deterministic PDF, verify the hashes later, and find the
batch (and PDF) of one request.

matplotlib and WeasyPrint are imported only when rendering.
"""

from tru.evidence.collect import collect
from tru.evidence.lookup import get_request
from tru.evidence.manifest import build_manifest, verify, verify_all, write_manifest
from tru.evidence.render import render_html, render_pdf

__all__ = [
    "build_manifest",
    "collect",
    "get_request",
    "render_html",
    "render_pdf",
    "verify",
    "verify_all",
    "write_manifest",
]
