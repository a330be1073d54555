"""Named sections of the generated benchmark reports, for the documentation to include.

The documentation quotes no measured figure by hand: where a page needs one, it includes a
section of the report the benchmark wrote (pymdownx.snippets, `--8<-- "<report>.md:<name>"`),
so the page always says what the committed report says. A section is a run of lines between
two HTML comments, invisible where the report itself is read."""

from __future__ import annotations


def section(name: str, lines: list[str]) -> list[str]:
    """`lines` marked as the section `name` of a generated report."""
    return [f"<!-- --8<-- [start:{name}] -->", "", *lines, "", f"<!-- --8<-- [end:{name}] -->"]
