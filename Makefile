# Two entry points: `make demo` and `make test`. Both bootstrap what they need
# (a virtualenv with pinned dependencies, stress-ng from the OS packages) and are
# idempotent: a second run reuses the environment.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.edgewise-installed

.PHONY: demo test lint typecheck unit bootstrap system-deps clean-venv

bootstrap: $(STAMP) system-deps

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

system-deps:
	@bash scripts/ensure-system-deps.sh

demo: bootstrap
	$(BIN)/edgewise demo

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

test: export EDGEWISE_NEED_CHROMIUM := 1
# Two phases: everything on both cores (the tests that start Ray one after another on one
# worker), then the tests that judge live latency, alone on the host (marked `alone`).
test: bootstrap lint typecheck
	$(BIN)/pytest -q -n 2 --dist loadgroup -m "not alone" --durations=10
	$(BIN)/pytest -q -p no:xdist -m alone --durations=5

clean-venv:
	rm -rf $(VENV)
