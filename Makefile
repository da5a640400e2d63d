# Everything bootstraps from python3 alone: the first target that needs the
# virtual environment creates it and installs the package with its test extras.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: test lint type unit demo bench bench-scale bench-delivery check-sim clean

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

# Scale (issue 12 item 6): the real daemon against a bulk tenant; ARGS=--quick for ~1 min.
bench-scale: $(STAMP)
	$(BIN)/python tests/bench/bench_scale.py $(ARGS)

# Delivery throughput (issue 12 item 7): 10,000 events at once to one local webhook.
bench-delivery: $(STAMP)
	$(BIN)/python tests/bench/bench_delivery.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
