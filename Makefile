# MAKOTO platform mesh. Two commands matter: `make up` and `make test`; each sets itself up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := node_modules/.bin/buf
PY_STAMP := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp

.PHONY: setup up test gen lint fmt bench profile clean check-gen api-package

setup: $(PY_STAMP) $(NODE_STAMP) .protodeps/.stamp

$(PY_STAMP): pyproject.toml gen/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# makoto-api (the server's dependency) from the repository's gen/, before the server.
	$(PY) -m pip install -q -e ./gen
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

# Third-party protos for buf (googleapis, buf/validate) from the installed wheels; git-ignored.
.protodeps/.stamp: scripts/protodeps.py $(PY_STAMP) $(shell find proto -name "*.proto")
	$(PY) scripts/protodeps.py
	touch $@

## Regenerate gen/ (Python messages, .pyi, gRPC stubs, Envoy descriptor set) from proto/.
gen: setup
	$(PY) scripts/gen.py

## Start the whole mesh on embedded defaults (Ctrl-C stops everything).
up: setup
	$(PY) -m services.cli up

## Run every test (unit, contract, e2e, security), after the import contracts (pyproject.toml).
test: setup
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

## Proto lint/format (buf, offline), ruff and mypy --strict.
lint: setup
	$(BUF) lint
	$(BUF) format --diff --exit-code proto
	$(VENV)/bin/ruff check services tests scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

fmt: setup
	$(BUF) format -w proto
	$(VENV)/bin/ruff format services tests scripts
	$(VENV)/bin/ruff check --fix services tests scripts

## Benchmarks: ratios against same-run baselines; writes docs/benchmarks.md.
bench: setup
	$(PY) -m tests.bench.run

## Profile: CPU per GetItem per process, and py-spy flame graphs of each service; writes docs/profile.md.
profile: setup
	$(PY) -m tests.bench.profile --gil

## Build the makoto-api client wheel (gen/ messages, stubs, .pyi, py.typed) into dist/.
api-package: setup
	$(PY) scripts/build_api_package.py

clean:
	rm -rf .makoto .pytest_cache .protodeps
