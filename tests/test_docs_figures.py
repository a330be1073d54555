"""No measured figure in the documentation is copied by hand.

A figure a benchmark measured (seconds, a Recall@20, a distance, a share) goes stale the
moment the benchmark runs again. The pages quote none: they include a named section of the
report the benchmark wrote (`--8<-- "reports/bench/<report>.md:<section>"`, tru/bench/markdown.py),
which the site builds from the committed report. This reads the hand-written pages' prose
(code blocks, inline code, link targets, comments and the include lines left out) and fails on
anything that reads as a measurement: a decimal number, or a number with a unit of time,
memory or a percent sign. A number that is a setting (a value params.yaml, the grid file or
tru/config.py sets, or one as a percentage) is a default, not a measurement, and stays; so do
version numbers and the paper's arXiv id."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_FILES = ("params.yaml", "reports/bench/grid.yaml", "tru/config.py")
# a decimal or a number with a unit; not part of a longer dotted run (a version, an address)
FIGURE = re.compile(r"(?<![\w.:/=-])(\d[\d,]*(?:\.\d+)?)(?!\d|[.,]\d)(?:\s?(s|ms|min|h|MB|GB)\b|\s?(%))?")
PROSE_DROPS = (
    re.compile(r"```.*?```", re.S),  # code blocks: commands and their sample output
    re.compile(r"<!--.*?-->", re.S),
    re.compile(r"`[^`\n]*`"),  # inline code: settings, paths, commands
    re.compile(r"\]\([^)]*\)"),  # link targets
    re.compile(r"^--8<--.*$", re.M),  # an included section: the generated report's own
    re.compile(r"(?:Python|CPython|arXiv:?)\s*\d[\d.]*"),
)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def settings() -> set[str]:
    """Every number the settings files set (their values, not their comments), as a page would
    print it."""
    numbers: list[float] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            numbers.append(node)

    for f in SETTINGS_FILES:
        path = ROOT / f
        if path.suffix == ".py":
            tree = ast.parse(path.read_text())
            walk([n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)])
        else:
            walk(yaml.safe_load(path.read_text()))
    out = set()
    for n in numbers:
        out.update({str(n), f"{n:g}", f"{n:,}"})
    return out


def prose(text: str) -> str:
    for pattern in PROSE_DROPS:
        text = pattern.sub(" ", text)
    return text


def hand_figures(text: str, allowed: set[str]) -> list[str]:
    """The figures of `text`'s prose that read as measurements and are no setting."""
    out = []
    for line in prose(text).splitlines():
        for m in FIGURE.finditer(line):
            number, unit = m.group(1), m.group(2) or m.group(3)
            if unit is None and "." not in number:
                continue  # a count or an ordinal: "30 nights", "night 10"
            plain = number.replace(",", "")
            if plain in allowed or (unit == "%" and f"{float(plain) / 100:g}" in allowed):
                continue  # a setting, or one as a percentage (a 95% interval, a 99% quantile)
            out.append(f"{m.group(0).strip()!r} in: {line.strip()[:120]}")
    return out


def test_the_scanner_tells_a_measurement_from_a_setting() -> None:
    text = (
        "TRU took 26.9 s and 111 s, 16% of the pairs, 0.044, 0.012 from the retrain.\n"
        "The gate's threshold (0.05) on 30 nights, `unlearn.tru.lr` 0.00075 in code: `1.5 s`.\n"
        "```\nscanned in 2.1 s\n```\n"
        "Python 3.11, arXiv:2604.02183, torch 2.13.0, 127.0.0.1.\n"
        '--8<-- "reports/bench/cost.md:table"\n'
    )
    found = hand_figures(text, {"0.05", "0.00075"})
    assert [f.split(" in:")[0] for f in found] == ["'26.9 s'", "'111 s'", "'16%'", "'0.044'", "'0.012'"]


def test_no_page_quotes_a_measured_figure_by_hand() -> None:
    allowed = settings()
    found = {str(page.relative_to(ROOT)): hits for page in pages() if (hits := hand_figures(page.read_text(), allowed))}
    assert not found, (
        "measured figures copied by hand into the docs; include the generated report's section instead "
        f"(tru/bench/markdown.py): {found}"
    )


def test_every_included_section_exists() -> None:
    """An include names a report and a section the report has (the site's build fails otherwise,
    and CI may not build the site)."""
    include = re.compile(r'^--8<--\s+"([^":]+)(?::([\w-]+))?"', re.M)
    for page in pages():
        for path, name in include.findall(page.read_text()):
            target = ROOT / path
            assert target.is_file(), f"{page.name} includes {path}, which does not exist"
            if name:
                assert f"[start:{name}]" in target.read_text(), f"{page.name}: {path} has no section {name!r}"
