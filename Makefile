# flox-isa: one place for every command CI and developers run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv lint unit e2e wheel-check test binaries image demo demo-down bench faults manifests kind-up kind-down clean

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
	$(BIN)/mypy --strict flox_isa tests bench hack/render-manifests.py hack/image/manifest.py
	$(BIN)/lint-imports

unit: $(STAMP) binaries ## unit tests (no cluster; the chart tests run the pinned helm)
	$(BIN)/pytest tests/unit

binaries: $(STAMP) ## build the pinned control-plane binaries (cached per version)
	$(BIN)/flox-isa devcluster build

e2e: $(STAMP) binaries image ## e2e tests on the local control plane (tests/e2e/test_image.py runs the image)
	$(BIN)/pytest tests/e2e

image: $(STAMP) ## build the image with buildah, no network in the build (hack/image/build.sh)
	PYTHON=$(BIN)/python hack/image/build.sh

wheel-check: $(STAMP) binaries ## the installed wheel runs devcluster up/down outside the checkout
	PYTHON=$(BIN)/python hack/wheel-check.sh

test: lint unit e2e wheel-check ## everything CI runs

demo: $(STAMP) binaries ## the product at work on a local simulated fleet (ARGS=--once to stop after)
	$(BIN)/flox-isa demo $(ARGS)

demo-down: $(STAMP) ## stop a running demo
	$(BIN)/flox-isa demo down

bench: $(STAMP) binaries ## benchmarks (not tests): each prints ratios measured side by side
	$(BIN)/python bench/webhook.py --devcluster
	$(BIN)/python bench/operator.py
	$(BIN)/python bench/placement.py

faults: $(STAMP) binaries ## fault suite (not a test): faults under load on a devcluster, a table
	$(BIN)/python bench/faults.py $(ARGS)

manifests: $(STAMP) binaries ## regenerate manifests/ from charts/flox-isa
	$(BIN)/python hack/render-manifests.py

kind-up: ## kind quickstart (needs Docker, kind, kubectl, helm); not run in CI
	hack/kind/up.sh

kind-down: ## delete the kind cluster
	hack/kind/down.sh

clean: ## remove the virtualenv and caches (not the binary cache)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
