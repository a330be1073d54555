"""Render the evidence: Jinja2 templates kept in the package (autoescape on, undefined names
are errors) to HTML, then WeasyPrint to PDF.

Deterministic: the PDF's dates come from the batch id (the time the batch was cut), its file
identifier from the batch id and the HTML, the plots are byte-stable SVG; nothing of the
machine, the checkout or the clock is an input (tru.evidence.collect reads no timings and no
git state). So the same inputs give a byte-identical PDF on the same software stack (Python
packages and fonts), whenever and wherever it is rendered, in the original checkout or a
fresh clone. Fonts: only the families the stylesheet names may be embedded; a font the
machine substitutes for them would make the bytes depend on the machine, and fails the
rendering instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from tru.errors import TruError
from tru.evidence import layout, renderer
from tru.evidence.collect import collect
from tru.evidence.manifest import write_manifest, write_sidecar
from tru.evidence.sections import PARTS, number, ordered_sections
from tru.io import atomic_path
from tru.requests.ledger import batch_time

NOT_RUN = "not run"
MISSING = "—"


def _num(value, digits: int = 3) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return MISSING if value is None else str(value)


def _pct(value, digits: int = 1) -> str:
    v = number(value)
    return MISSING if v is None else f"{100 * v:.{digits}f}%"


def _ci(pair, digits: int = 3) -> str:
    if isinstance(pair, (list, tuple)) and len(pair) == 2 and all(number(x) is not None for x in pair):
        return f"[{pair[0]:.{digits}f}, {pair[1]:.{digits}f}]"
    return ""


def _sci(value, digits: int = 2) -> str:
    v = number(value)
    return MISSING if v is None else f"{v:.{digits}e}"


def environment() -> Environment:
    """The Jinja2 environment of the evidence templates: autoescape on, undefined names are
    errors, with the report's number filters (num, pct, ci, sci) and globals."""
    env = Environment(
        loader=PackageLoader("tru.evidence", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(num=_num, pct=_pct, ci=_ci, sci=_sci)
    env.globals.update(NOT_RUN=NOT_RUN, MISSING=MISSING)
    return env


def render_html(evidence: dict) -> str:
    """The evidence as one self-contained HTML page (CSS inline, plots as data URIs)."""
    env = environment()
    sections = [
        {"key": s.key, "title": s.title, "template": s.template, "part": s.part, "ctx": s.build(evidence)}
        for s in ordered_sections()
    ]
    return env.get_template("evidence.html.j2").render(ev=evidence, sections=sections, parts=PARTS)


def _identifier(evidence: dict, html: str) -> bytes:
    """The PDF's file identifier: a function of what it shows and nothing else."""
    digest = hashlib.sha256(evidence["batch"].encode() + b"\0" + html.encode("utf-8"))
    return digest.hexdigest()[:32].encode("ascii")


def _check_fonts(document) -> None:
    """Fail when the PDF embeds a font the stylesheet does not name: the machine's font
    configuration chose it (a missing family, or a script none of the named fonts covers),
    and another machine would choose another, giving other bytes."""
    used = {str(f.family) for f in (getattr(document, "fonts", None) or {}).values()}
    foreign = sorted(used - renderer.stylesheet_fonts())
    if foreign:
        raise TruError(
            f"the evidence PDF would embed font(s) {', '.join(foreign)}, which evidence.css does not name "
            f"(this machine substituted them): install the fonts it names "
            f"({', '.join(sorted(renderer.stylesheet_fonts()))}), so the PDF does not depend on the machine"
        )


@contextlib.contextmanager
def _source_date_epoch(seconds: int):
    """SOURCE_DATE_EPOCH for the duration of the block: fontTools stamps the embedded font
    subsets with it (else with the wall clock). Not thread-safe: the environment is global."""
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(seconds)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old


def pdf_bytes(evidence: dict, html: str | None = None) -> bytes:
    """The PDF of `evidence`. Every date in it is the batch's time (from its id), whatever the
    clock or SOURCE_DATE_EPOCH say, so re-rendering the same inputs gives the same bytes."""
    from weasyprint import HTML  # why: slow to import; only rendering a PDF needs it

    html = render_html(evidence) if html is None else html
    with _source_date_epoch(int(batch_time(evidence["batch"]).timestamp())), renderer.fonttools_subsetting():
        doc = HTML(string=html, base_url=None).render()
        data = doc.write_pdf(pdf_identifier=_identifier(evidence, html), uncompressed_pdf=False)
    _check_fonts(doc)
    return data


def render_pdf(
    batch_id: str, root: str | Path = Path("."), out: str | Path | None = None, batches_file: str | Path | None = None
) -> Path:
    """Collect the batch's evidence, write reports/<B>/manifest.json, render the PDF to `out`
    (default reports/<B>/evidence.pdf; written atomically) and, for the default path, the
    sidecar reports/<B>/evidence.sha256 with the PDF's and the manifest's hashes."""
    root = Path(root)
    evidence = collect(batch_id, root, batches_file)
    write_manifest(batch_id, root, evidence["manifest"])
    data = pdf_bytes(evidence)
    target = Path(out) if out is not None else root / layout.pdf_path(batch_id)
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    if out is None:
        write_sidecar(batch_id, root)
    return target
