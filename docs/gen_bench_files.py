"""Put the generated benchmark outputs beside the page that includes them.

docs/benchmarks/results.md includes reports/bench/README.md (written by `tru bench grid`)
verbatim, and that file links its plots relative to itself (`results_frontier.png`). Copying
every file of reports/bench/ except the README into the site's benchmarks/ folder at build
time keeps those links, and the links to the raw CSV/JSON results, working without a copy in
git. A figure on the site is therefore always the one the benchmarks last wrote.
"""

from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "reports" / "bench"

for path in sorted(BENCH.iterdir()):
    if path.is_file() and path.name != "README.md":
        with mkdocs_gen_files.open(Path("benchmarks", path.name), "wb") as fd:
            fd.write(path.read_bytes())
