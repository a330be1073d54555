# The README's two commands: `make run` (main job on the default dataset) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tru-installed

# Offline, reproducible defaults (see docs/operations.md, "Environment").
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export MPLCONFIGDIR := $(CURDIR)/.mplconfig
export SOURCE_DATE_EPOCH ?= 1767225600
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run serve portal test lint bench docs docs-serve venv key clean-venv

venv: $(STAMP)

# The locked environment (docs/operations.md, "Environment"): every package `.[test,docs]` needs,
# pinned with == and the sha256 of its files in requirements.lock (made by tools/lock.sh), so a
# clone installs the same versions, and a file whose hash differs fails the install. torch is the
# local CPU build, torch==2.13.0+cpu (PyPI's torch 2.13.0 is a multi-GB CUDA build). Then the
# project itself, editable, with nothing more: --no-deps, and the locked setuptools as its build backend.
LOCK := requirements.lock
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --require-hashes -r $(LOCK)
	$(PIP_INSTALL) --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The base pipeline through DVC, then the deletion batch through the Prefect flow
# `erasure-batch` (a temporary Prefect server, nothing to set up), recorded in dvc.lock: a demo
# request file the first time (no batch registered yet), then whatever waits in the inbox;
# an empty inbox finishes quickly and changes nothing.
DEMO_BATCH_TIME ?= 2026-01-01T03:00:00Z
run: $(STAMP) key
	$(BIN)/dvc config --local core.analytics false
	$(BIN)/dvc repro evaluate
	@# the first run: the demo requests, as a batch dated like them (a fixed seed: the same model anywhere)
	@if grep -q 'id:' batches.yaml; then $(BIN)/tru nightly; \
	else $(BIN)/tru demo-requests && $(BIN)/tru nightly --batch-time $(DEMO_BATCH_TIME); fi
	$(BIN)/tru status

# The nightly deployment on a local Prefect server (UI at http://127.0.0.1:4200); Ctrl-C stops both.
CRON ?= 0 2 * * *
serve: $(STAMP) key
	$(BIN)/tru serve --local-server --cron "$(CRON)"

# The evidence portal for a data-protection officer, read-only, on http://127.0.0.1:8300; Ctrl-C stops it.
# Beyond this machine (PORTAL_HOST=0.0.0.0) it needs $$TRU_PORTAL_TOKEN (docs/audits.md, "The evidence portal").
PORTAL_HOST ?= 127.0.0.1
PORTAL_PORT ?= 8300
portal: $(STAMP)
	$(BIN)/tru portal --host $(PORTAL_HOST) --port $(PORTAL_PORT)

# The pseudonymisation key and the evidence signing key: $$TRU_PSEUDONYM_KEY and $$TRU_SIGNING_KEY in
# production; local git-ignored files otherwise.
key:
	@if [ -z "$$TRU_PSEUDONYM_KEY" ] && [ ! -s .tru-secret ]; then \
	  $(BIN)/python -c 'import secrets; print(secrets.token_hex(32))' > .tru-secret; chmod 600 .tru-secret; \
	  echo "generated a local pseudonymisation key in .tru-secret (git-ignored; production sets TRU_PSEUDONYM_KEY)"; fi
	@if [ -z "$$TRU_SIGNING_KEY" ] && [ ! -s .tru-signing-key ]; then \
	  $(BIN)/python -c 'import secrets; print(secrets.token_hex(32))' > .tru-signing-key; chmod 600 .tru-signing-key; \
	  echo "generated a local evidence signing key in .tru-signing-key (git-ignored; production sets TRU_SIGNING_KEY)"; fi

# Two test processes (the machine kind has 2 cores); whole files per process, the long ones first.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

# Lint and types (CI runs it before the tests): ruff (pycodestyle, pyflakes, import order,
# bugbear, pyupgrade; formatting) and mypy on the library (settings in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check tru flows tasks tests docs
	$(BIN)/ruff format --check tru flows tasks tests docs
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/tru bench train
	$(BIN)/tru bench ingest
	$(BIN)/tru bench unlearn
	$(BIN)/tru bench audit
	$(BIN)/tru bench gate --backbones mgcn
	$(BIN)/tru bench nightly

# The documentation site (mkdocs.yml, docs/): strict, so a broken link or reference fails the
# build; the API reference, the CLI page and the benchmark results are generated at build time.
# (the two variables silence a banner some MkDocs plugins print about a future MkDocs 2)
export NO_MKDOCS_2_WARNING := 1
export DISABLE_MKDOCS_2_WARNING := true
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

DOCS_PORT ?= 8000
docs-serve: $(STAMP)
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)

clean-venv:
	rm -rf $(VENV)
