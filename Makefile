# The two commands a new user runs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,plot,postgres,ray]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python bin/main_job.py

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check adsearch tests benchmarks bin
	$(BIN)/mypy adsearch

bench: install
	$(BIN)/python -m pip install -q -e '.[bench]'
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
