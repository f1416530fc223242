# flox-isa: one place for every command CI and developers run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv lint typecheck layers unit e2e test binaries demo demo-down bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@echo "==> creating $(VENV) and installing pinned dependencies (constraints.txt)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

venv: $(STAMP) ## virtualenv with pinned dependencies

lint: $(STAMP) ## ruff, mypy --strict, import-linter layering
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict flox_isa tests bench
	$(BIN)/lint-imports

unit: $(STAMP) ## unit tests (no cluster)
	$(BIN)/pytest tests/unit

binaries: $(STAMP) ## build the pinned control-plane binaries (cached per version)
	$(BIN)/flox-isa devcluster build

e2e: $(STAMP) binaries ## e2e tests on the local control plane
	$(BIN)/pytest tests/e2e

test: lint unit e2e ## everything CI runs

clean: ## remove the virtualenv and caches (not the binary cache)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
