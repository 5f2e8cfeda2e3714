# One entry point for a fresh machine: every target installs what it needs, idempotently.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := .make
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP):
	mkdir -p $(STAMP)

$(STAMP)/python: pyproject.toml | $(STAMP)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

$(STAMP)/node: package.json package-lock.json | $(STAMP)
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

# The real Drizzle for tests/test_migrations.py: a package of its own (its peers do not resolve
# beside cdktf-cli's), and drizzle 1.0 in another (it needs drizzle-orm 1.0 as its peer).
$(STAMP)/drizzle: tests/drizzle/package.json tests/drizzle/package-lock.json \
		tests/drizzle/v1/package.json tests/drizzle/v1/package-lock.json | $(STAMP)
	npm ci --prefix tests/drizzle --no-audit --no-fund --ignore-scripts --loglevel=error
	npm ci --prefix tests/drizzle/v1 --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

$(STAMP)/system: scripts/install-system.sh | $(STAMP)
	bash scripts/install-system.sh
	touch $@

# The four installs are independent and mostly wait on the network: side by side they take the
# longest one's time (a fresh clone: ~70 s instead of ~130 s), each one's output kept together.
INSTALLS := $(STAMP)/python $(STAMP)/node $(STAMP)/drizzle $(STAMP)/system

install:  ## install Python, Node and system dependencies
	@$(MAKE) --no-print-directory -j4 --output-sync=target $(INSTALLS)

lint: install  ## ruff, mypy and the import contracts between layers
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint  ## lint, then the whole test suite (what CI runs)
	$(VENV)/bin/python -m pytest -q

mutants: install  ## remove each safety check in a scratch copy: its tests must fail (prints a table)
	$(PY) scripts/mutants.py

test-cloud: install  ## the seed story on real Neon, Cloudflare and S3/R2 (skipped without credentials)
	$(VENV)/bin/python -m pytest -m cloud tests/cloud

demo: install  ## the main job: the seed story on the embedded default backend
	$(PY) scripts/demo.py

bench: install  ## benchmarks (print tables)
	$(PY) bench/synth.py
	$(PY) bench/state_server.py
	$(PY) bench/preview.py

worker: install  ## rebuild the example Worker bundle (commit worker/dist/index.js)
	node scripts/build-worker.mjs

generate: install  ## regenerate typed provider bindings from the schema snapshots
	$(PY) -m cdk.providers.codegen

clean:  ## remove build and runtime output
	rm -rf cdktf.out .forkstage $(STAMP)

.PHONY: help install lint test mutants test-cloud demo bench generate worker clean
