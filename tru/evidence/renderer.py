"""What shapes the evidence PDF's bytes besides its inputs, recorded in the manifest: the
versions of the renderer (WeasyPrint, pydyf, fontTools), the font subsetting path, and the
font files the stylesheet's families resolve to on this machine.

The subsetting path is pinned: WeasyPrint subsets embedded fonts with HarfBuzz when the system
library libharfbuzz-subset is installed and with fontTools otherwise, and the two give other
bytes for the same document. `fonttools_subsetting` makes every render take the fontTools path
(a Python package, its version locked with the others), so a machine with or without the
library gives the same PDF.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from importlib import metadata, resources
from pathlib import Path

SUBSETTING = "fontTools (pinned: the same bytes with or without libharfbuzz-subset)"
PACKAGES = ("weasyprint", "pydyf", "fonttools", "tinycss2", "cssselect2")


GENERIC_FAMILIES = {"serif", "sans-serif", "monospace", "cursive", "fantasy", "system-ui", "math", "emoji"}


def stylesheet_fonts() -> set[str]:
    """The font families evidence.css names (generic families aside)."""
    css = resources.files("tru.evidence").joinpath("templates", "evidence.css").read_text(encoding="utf-8")
    names = {n.strip().strip("'\"") for decl in re.findall(r"font-family:\s*([^;}]+)", css) for n in decl.split(",")}
    return {n for n in names if n and n.lower() not in GENERIC_FAMILIES}


@contextlib.contextmanager
def fonttools_subsetting() -> Iterator[None]:
    """For the duration of the block, WeasyPrint subsets fonts with fontTools, whether or not
    HarfBuzz's subsetting library is installed (WeasyPrint takes HarfBuzz whenever it finds it;
    the module-level handle it checks is the only switch it offers). Not thread-safe."""
    from weasyprint.pdf import fonts  # why: slow to import; only rendering needs it

    before = fonts.harfbuzz_subset
    fonts.harfbuzz_subset = None
    try:
        yield
    finally:
        fonts.harfbuzz_subset = before


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def font_files(families: set[str]) -> list[dict]:
    """The font file each family resolves to through fontconfig (`fc-match`), when it is that
    family and not a substitute: family, the font's own revision and its sha256 (no path: it
    differs between machines that hold the same file)."""
    if shutil.which("fc-match") is None:
        return []
    out = []
    for family in sorted(families):
        res = subprocess.run(
            ["fc-match", "-f", "%{family[0]}\t%{file}", family], capture_output=True, text=True, timeout=30
        )
        found, _, file = res.stdout.partition("\t")
        if res.returncode != 0 or found != family or not file:
            continue
        with open(file, "rb") as fh:
            data = fh.read()
        out.append({"family": family, "revision": _revision(file), "sha256": hashlib.sha256(data).hexdigest()})
    return out


def _revision(file: str) -> str | None:
    from fontTools.ttLib import TTFont  # why: only the manifest's font list needs it

    try:
        with TTFont(file, lazy=True, fontNumber=0) as font:
            return f"{font['head'].fontRevision:.3f}"
    except Exception:  # a font fontTools cannot read: its hash still names it
        return None


LOCK_FILE = "requirements.lock"  # the hash-locked environment the Makefile installs (tools/lock.sh)


def renderer_info(root: str | Path = ".") -> dict:
    """The manifest's `renderer` entry: package versions, the subsetting path, the fonts of
    the stylesheet's families, and the sha256 of the environment's lock file at `root` (None
    without one): the lock pins every package, these versions say which were installed."""
    lock = Path(root) / LOCK_FILE
    return {
        "packages": {p: _version(p) for p in PACKAGES},
        "font_subsetting": SUBSETTING,
        "fonts": font_files(stylesheet_fonts()),
        "lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else None,
    }
