"""Generate the API reference at build time: one page per module of the `tru` library and of
the orchestration layer (`flows`, `tasks`), plus the literate-nav file that lists them.

The pages are never committed: they are derived from the source tree on every build, so a
module that moves, appears or goes away changes the reference without editing any page.
"""

from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tru", "flows", "tasks")

nav = mkdocs_gen_files.Nav()

for package in PACKAGES:
    for path in sorted((ROOT / package).rglob("*.py")):
        module = path.relative_to(ROOT).with_suffix("")
        parts = tuple(module.parts)
        doc = Path(*parts).with_suffix(".md")
        if parts[-1] == "__main__" or any(p.startswith("_") and p != "__init__" for p in parts):
            continue
        if path.name != "__init__.py" and (path.with_suffix("") / "__init__.py").is_file():
            continue  # a module shadowed by a package of the same name (Python imports the package)
        if parts[-1] == "__init__":
            parts = parts[:-1]
            doc = Path(*parts, "index.md")
        nav[parts] = doc.as_posix()
        with mkdocs_gen_files.open(Path("reference", doc), "w") as fd:
            fd.write(f"::: {'.'.join(parts)}\n")
        mkdocs_gen_files.set_edit_path(Path("reference", doc), path.relative_to(ROOT))

with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as fd:
    fd.writelines(nav.build_literate_nav())
