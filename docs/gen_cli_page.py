"""Generate the `tru` command's reference page at build time from the CLI itself (Typer's
own `typer ... utils docs`, the same text as `tru COMMAND --help`), so a new command or option
shows up without editing any page."""

import subprocess
import sys

import mkdocs_gen_files

INTRO = """\
Every command and option of `tru`, generated from the CLI at build time (the same text as
`tru COMMAND --help`). Each DVC stage is one of these commands; see the stage table on the
[home page](index.md#what-make-run-does).

"""

out = subprocess.run(
    [sys.executable, "-m", "typer", "tru.cli", "utils", "docs", "--name", "tru", "--title", "The tru command"],
    check=True,
    capture_output=True,
    text=True,
).stdout
title, _, body = out.partition("\n")
with mkdocs_gen_files.open("cli.md", "w") as fd:
    fd.write(f"{title}\n\n{INTRO}{body}")
