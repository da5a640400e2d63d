# Everything bootstraps from python3 alone: the first target that needs the
# virtual environment creates it and installs the package with its test extras.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: test lint type unit demo bench check-sim clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check watcher tests
	$(BIN)/lint-imports

type: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	sh tests/system_deps.sh
	$(BIN)/pytest -n 2

test: lint type unit

demo: $(STAMP)
	$(BIN)/cce-upgrade-watcher demo

bench: $(STAMP)
	$(BIN)/python tests/bench/bench_poll.py
	$(BIN)/python tests/bench/bench_latency.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
