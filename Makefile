# Everything bootstraps from python3 alone: the first target that needs the
# virtual environment creates it and installs the package with its test extras.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: test test-ha lint type unit demo bench bench-scale bench-delivery bench-ha check-sim clean

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
	$(BIN)/pytest -n 2 --ignore=tests/ha

# Failover and database-restart proofs (issue 11 item 4): each test runs several daemons,
# a simulator and PostgreSQL at once, so they run one at a time after the unit tests.
test-ha: $(STAMP)
	sh tests/system_deps.sh postgresql
	$(BIN)/pytest -p no:randomly -rxX -s tests/ha  # -s: each test prints its one-line verdict

test: lint type unit test-ha

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

# HA (issue 11 item 6): three replicas on PostgreSQL sharing 10,000 workflows; ARGS=--quick.
bench-ha: $(STAMP)
	sh tests/system_deps.sh postgresql
	$(BIN)/python tests/bench/bench_ha.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
