# Two commands a fresh machine needs: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
WORKDIR ?= runs/default

.PHONY: run test bench lint notebook sweep-cpu clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $(STAMP)

$(DEVSTAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(DEVSTAMP)

run: $(STAMP)
	$(PY) -m train.main --config=train/configs/default.py --workdir=$(WORKDIR)

test: $(DEVSTAMP)
	$(PY) -m pytest -n 2 --dist=loadfile -q tests

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

notebook: $(DEVSTAMP)
	$(PY) -m pytest -q tests/test_notebook.py

sweep-cpu: $(STAMP)
	PY=$(PY) bash scripts/cpu_sweep.sh

lint: $(DEVSTAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
