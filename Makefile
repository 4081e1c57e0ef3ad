# llmtool — set-up, tests, demo, benchmarks. `make demo` and `make test` work on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch is installed first, so the "torch>=2.4" dependency is already met and
# pip never downloads a multi-GB CUDA build. On a GPU machine: make setup TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup test test-real test-slow demo bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev,bench]"
	touch $(STAMP)

# Two tiers (README, Development). `make test` needs nothing outside the repository and fails
# if any test skips. `make test-real` runs the tests marked `real` on the real data in
# $LLMTOOL_DATA (default ../shared/data); without it they error out instead of skipping.
test: setup
	$(BIN)/python -m pytest -q --no-skips -m "not slow and not real" tests

test-real: setup
	$(BIN)/python -m pytest -q --no-skips -m "real and not slow" tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-real: no tests marked real were collected"; rc=0; fi; exit $$rc

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

# Mutation fuzzer (fuzz/): damaged artifacts of every kind must fail cleanly. Seeded and
# time-budgeted; failing cases go to fuzz/findings/. make fuzz FUZZ_SECONDS=60 for CI.
FUZZ_SECONDS ?= 180
.PHONY: fuzz
fuzz: setup
	$(BIN)/python -m fuzz --seconds $(FUZZ_SECONDS)
