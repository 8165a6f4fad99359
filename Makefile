# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench lint clean emulators emulators-stop

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

emulators:
	@bash scripts/emulators.sh start

emulators-stop:
	@bash scripts/emulators.sh stop

demo: setup
	bash scripts/demo.sh

test: setup
	$(VENV)/bin/pytest -q

bench: setup
	$(PY) bench/bench_sweep.py
	$(PY) bench/bench_store.py
	$(PY) bench/bench_bus.py
	$(PY) bench/bench_scheduler.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared functions agent devhost hpc function_app.py

clean:
	rm -rf $(VENV) .hpc-demo .pytest_cache
