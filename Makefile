# The two commands a new user needs:
#   make demo   - set up .venv and run the whole pipeline once on the embedded broker
#   make test   - set up .venv with the test extras and run ruff, mypy and pytest
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ROWS ?= 1000000
BENCH_OUT ?= bench/results/latest.json
# The Quix Streams peer of the benchmark lives in its own venv: it pins other versions of
# confluent-kafka and pydantic than this project.
PEER_VENV ?= .venv-peer

.PHONY: demo test lint typecheck pytest bench bench-smoke clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/isin-pipeline demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

pytest: $(VENV)/.installed-test
	$(BIN)/pytest -n 4

test: lint typecheck pytest

$(PEER_VENV)/.installed: bench/requirements-peer.txt
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEER_VENV)/bin/python -m pip install --quiet -r bench/requirements-peer.txt
	touch $@

# make bench [ROWS=9300000]: figures as ratios to this machine's limits and to the peer
bench: $(VENV)/.installed $(PEER_VENV)/.installed
	$(BIN)/python -m bench.run --rows $(ROWS) --workers 1,2 --e2e --out $(BENCH_OUT)

# what CI runs: the whole benchmark on a small list, checked for correctness, not speed
bench-smoke: $(VENV)/.installed $(PEER_VENV)/.installed
	$(BIN)/python -m bench.run --rows 20000 --workers 1,2 --out bench/results/smoke.json

clean:
	rm -rf $(VENV) $(PEER_VENV) state .pytest_cache .mypy_cache .ruff_cache
