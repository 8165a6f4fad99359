# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# checkov (scans infra/ in `make test`) gets a venv of its own: it pins older packaging and
# python-dateutil than this project's and pulls ~80 packages (boto3, numpy, aiohttp...).
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV    := .venv-checkov
CHECKOV_STAMP   := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

.PHONY: setup demo test bench lint clean emulators emulators-stop checkov cloudinit demo-emulated

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install -q 'checkov==$(CHECKOV_VERSION)'
	touch $@

checkov: $(CHECKOV_STAMP)

# the real cloud-init (Debian's package, unpacked) checks the node VMs' custom data
cloudinit:
	@bash scripts/cloudinit.sh

emulators:
	@bash scripts/emulators.sh start

emulators-stop:
	@bash scripts/emulators.sh stop

demo: setup
	bash scripts/demo.sh

demo-emulated: setup
	bash scripts/demo_emulated.sh

# the suite on TEST_WORKERS processes (pytest-xdist), a test file per worker at a time, so a
# file's module fixtures are shared as in a plain `pytest`; the stand-ins are installed first
# (each worker starts its own, and two npm installs into one folder would race)
TEST_WORKERS ?= 2

test: setup checkov cloudinit
	@if command -v npm >/dev/null 2>&1; then bash scripts/emulators.sh install; fi
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: setup
	$(PY) bench/bench_sweep.py
	$(PY) bench/bench_submit.py
	$(PY) bench/bench_range_cancel.py
	$(PY) bench/bench_store.py
	$(PY) bench/bench_bus.py
	$(PY) bench/bench_scheduler.py
	$(PY) bench/bench_autoscaler.py
	$(PY) bench/bench_pass.py
	$(PY) bench/bench_task_table.py
	$(PY) bench/bench_forecast_memory.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared functions agent devhost hpc function_app.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .venv-cloudinit .hpc-demo .hpc-demo-emulated .pytest_cache
