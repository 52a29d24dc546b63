# `make book`: set up .venv and build the HTML book into _build/html/index.html.
# `make test`: set up .venv and run every check (lint, unit tests, chapters, book, browser).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LINT   := lib tests $(wildcard benchmarks _ext)
LIB    := $(shell find lib -name '*.py' 2>/dev/null)
CACHE  := _build/.jupyter_cache
# cffconvert needs jsonschema<4, the stack pins jsonschema 4: it lives in its own venv.
CFF    := .venv-cff
CFF_STAMP := $(CFF)/.installed
WORKFLOWS := $(wildcard .github/workflows/*.yml)

.PHONY: book test paper lint format venv clean distclean

book: $(STAMP) _build/.lib-stamp
	$(BIN)/jupyter-book build -W -n --keep-going .
	$(BIN)/python -m dufm.scorecard_page readme

# jupyter-cache re-executes a chapter only when its own text changes, and Sphinx re-reads only the
# sources that changed: drop both the cache and Sphinx's saved environment whenever the library or
# the pinned stack changes, so the book never shows results of older code.
_build/.lib-stamp: $(LIB) requirements.txt pyproject.toml
	rm -rf $(CACHE) _build/.doctrees
	mkdir -p _build
	touch $@

# The paper sets of every chapter that can run here, kept in results/paper/ (dufm.archive): about
# 70 minutes on 2 CPU cores; a chapter that fails keeps its earlier kept run.
paper: $(STAMP)
	$(BIN)/python -m dufm.run --params paper --archive --out _build/paper-runs

test: $(STAMP) lint
	$(BIN)/python -m pytest tests

# ruff on the code; the chapters' code cells (dufm.style); CITATION.cff against the Citation File
# Format schema; the workflows.
lint: $(STAMP) $(CFF_STAMP)
	$(BIN)/ruff check $(LINT)
	$(BIN)/ruff format --check $(LINT)
	$(BIN)/python -m dufm.style --check chapters/*.md
	$(CFF)/bin/cffconvert --validate -i CITATION.cff
	$(BIN)/actionlint $(WORKFLOWS)

venv: $(STAMP)

# Format the chapters' code cells (ruff at 88 columns), leaving their text and metadata alone.
format: $(STAMP)
	$(BIN)/python -m dufm.style chapters/*.md

# Re-install whenever the pins or the package metadata change; a second run is instant.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(CFF_STAMP): requirements-cff.txt
	test -x $(CFF)/bin/python || $(PYTHON) -m venv $(CFF)
	$(CFF)/bin/python -m pip install --quiet -r requirements-cff.txt
	touch $@

# clean keeps runs/ (your executed reruns), results/paper (the kept paper runs), chapters/_sweeps
# (finished sweep batches) and .venv;
# distclean also removes the sweep batches, .venv and .venv-cff.
clean:
	rm -rf _build .pytest_cache .ruff_cache lib/*.egg-info
	find lib tests -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(CFF) chapters/_sweeps
