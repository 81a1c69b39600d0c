# The two commands a new user runs: `make run` and `make test`.
#
# `make run` installs adsearch and what its main job needs (torch, torchvision and a few small
# libraries), nothing else; `make test` adds the test tools and every optional backend the
# tests cover (matplotlib, the PostgreSQL driver, Ray). torch's default Linux wheel bundles
# the CUDA libraries (about 5.6 GB in all); on a machine with no NVIDIA GPU,
# `make run TORCH=cpu` installs the CPU-only wheels from download.pytorch.org (about 1.1 GB).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  ?= default
ifeq ($(TORCH),cpu)
PIP_TORCH := --extra-index-url https://download.pytorch.org/whl/cpu
endif
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q $(PIP_TORCH) -e .
	touch $@

$(TEST_STAMP): pyproject.toml $(RUN_STAMP)
	$(BIN)/python -m pip install -q $(PIP_TORCH) -e '.[dev,plot,postgres,ray,tpe,dashboard]'
	touch $@

install: $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/python bin/main_job.py

test: $(TEST_STAMP)
	$(BIN)/python -m pytest

lint: $(TEST_STAMP)
	$(BIN)/ruff check adsearch tests benchmarks bin
	$(BIN)/mypy adsearch

bench: $(TEST_STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
