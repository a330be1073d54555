#!/usr/bin/env bash
# Regenerate requirements.lock: every package `.[test,docs]` needs on Python 3.11 Linux x86_64,
# pinned with == and the sha256 of each file, for `pip install --require-hashes` (the Makefile's venv).
#
#   tools/lock.sh                               # re-lock; the pins already in the lock are kept
#   tools/lock.sh --upgrade-package weasyprint  # move one package (and what it needs) to its newest release
#   tools/lock.sh --upgrade                     # move everything to the newest releases
#
# pip-compile (pip-tools, pinned below) runs from a venv of its own, outside the project's .venv.
# torch is held to the local CPU build, torch==2.13.0+cpu from pip's find-links (/opt/wheels on
# this kind of machine): PyPI's torch 2.13.0 is a CUDA build whose metadata pulls nvidia-* and
# triton. The script fails if the lock ends up with a CUDA package anyway.
set -euo pipefail
cd "$(dirname "$0")/.."

PIP_TOOLS_VERSION=7.6.2
TORCH_PIN='torch==2.13.0+cpu'
TOOLS_VENV=${TRU_LOCK_TOOLS_VENV:-${TMPDIR:-/tmp}/tru-pip-tools-$PIP_TOOLS_VERSION}
PYTHON=${PYTHON:-python3}

"$PYTHON" - <<'PY'
import platform, sys
if sys.version_info[:2] != (3, 11) or sys.platform != "linux" or platform.machine() != "x86_64":
    sys.exit(f"tools/lock.sh: the lock is for CPython 3.11 on Linux x86_64, not {sys.version.split()[0]} on {sys.platform} {platform.machine()}")
PY

if [ ! -x "$TOOLS_VENV/bin/pip-compile" ]; then
  "$PYTHON" -m venv "$TOOLS_VENV"
  "$TOOLS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "pip-tools==$PIP_TOOLS_VERSION"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "$TORCH_PIN" > "$work/torch-cpu.txt"

# --allow-unsafe: setuptools is a requirement of torch and zc.lockfile, and the build backend of
# the project's own editable install (--no-build-isolation), so it is locked like the rest.
# No index or find-links lines in the lock: pip's own configuration says where files come from;
# the hashes say which files are acceptable.
CUSTOM_COMPILE_COMMAND="tools/lock.sh" "$TOOLS_VENV/bin/pip-compile" \
  --quiet --resolver=backtracking \
  --generate-hashes --allow-unsafe --no-strip-extras \
  --extra test --extra docs \
  --constraint "$work/torch-cpu.txt" \
  --no-emit-index-url --no-emit-trusted-host --no-emit-find-links \
  --output-file requirements.lock \
  "$@" pyproject.toml

# The constraint file is a temporary one: name what it holds, not its path, so that a re-lock
# with nothing new writes the same file.
sed -i "s|-c $work/torch-cpu.txt|-c $TORCH_PIN (tools/lock.sh)|" requirements.lock

# Sanity: torch is the CPU build, and nothing CUDA came in.
grep -q "^${TORCH_PIN//./\\.} " requirements.lock || { echo "tools/lock.sh: $TORCH_PIN is not in requirements.lock" >&2; exit 1; }
if grep -Eiq '^(nvidia-|triton|cuda-|pytorch-triton)' requirements.lock; then
  echo "tools/lock.sh: a CUDA package in requirements.lock:" >&2
  grep -Ei '^(nvidia-|triton|cuda-|pytorch-triton)' requirements.lock >&2
  exit 1
fi
echo "requirements.lock: $(grep -c '^[A-Za-z0-9]' requirements.lock) packages pinned with hashes"
