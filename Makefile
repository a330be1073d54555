# The README's two commands: `make run` (main job on the default dataset) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tru-installed

# Offline, reproducible defaults (see DESIGN.md section 8).
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90
export MPLCONFIGDIR := $(CURDIR)/.mplconfig
export SOURCE_DATE_EPOCH ?= 1767225600
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test bench venv clean-venv

venv: $(STAMP)

# torch first and pinned: an open range would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/dvc config --local core.analytics false
	$(BIN)/dvc repro
	@echo "metrics: reports/train/metrics.json"; cat reports/train/metrics.json

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/tru bench train

clean-venv:
	rm -rf $(VENV)
