# Two commands do all the set-up on a fresh machine:
#   make demo   runs a workflow on a local pilot
#   make test   runs every test (unit and integration)
# and, for developers: make bench (benchmarks side by side), make docs.
# Both create .venv and install the project into it first.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test docs bench clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,docs]'
	touch $@

demo: $(STAMP)
	mkdir -p build/demo
	cd build/demo && ../../$(PY) ../../examples/getting_started.py

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests integration_tests

bench: $(STAMP)
	$(PY) -m benchmarks $(BENCH_ARGS)

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs build/docs

clean:
	rm -rf build $(VENV) *.egg-info
