# llmtool — set-up, tests, demo, benchmarks. `make demo` and `make test` work on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch is installed first, so the "torch>=2.4" dependency is already met and
# pip never downloads a multi-GB CUDA build. On a GPU machine: make setup TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup test test-slow demo bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev,bench]"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q -x tests

test-slow: setup
	$(BIN)/python -m pytest -q -m slow tests

demo: setup
	bash examples/pipeline.sh demo_out

bench: setup
	$(BIN)/python -m bench

lint: setup
	$(BIN)/ruff check llmtool tests bench

clean:
	rm -rf $(VENV) demo_out bench/results build *.egg-info
