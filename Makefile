# cladec: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLADEC := $(VENV)/bin/cladec
# TensorFlow distribution: tensorflow[and-cuda] where nvidia-smi finds a GPU, else tensorflow-cpu.
TF ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo 'tensorflow[and-cuda]' || echo tensorflow-cpu)
JAX_VENV ?= .venv-jax
TORCH_VENV ?= .venv-torch
# PyTorch for `make test-torch` (a CPU-only build: TORCH_PIP_FLAGS='--extra-index-url https://download.pytorch.org/whl/cpu').
TORCH_PIP_FLAGS ?=
GPU_BUNDLE ?= gpu-bundle
DATA_DIR := /usr/share/datasets/fashion-mnist
# `make demo`: a stratified subset of each split and few epochs, so it finishes in about a minute on
# a 2-core CPU; `make demo-full`: the same steps on all 60,000 training images.
DEMO_DIR ?= demo
DEMO_LIMIT ?= 4000
DEMO_EPOCHS ?= 3
DEMO_FULL_DIR ?= demo-full
DEMO_FULL_EPOCHS ?= 3
DEMO_FLAGS ?=
BENCHMARK_FLAGS ?=
# Test processes (pytest-xdist); 0 runs the tests in pytest's own process.
TEST_WORKERS ?= 2
PYTEST_WORKERS = $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS))
# `make table2|table3|table4`: the paper's protocol (10 runs, 64 epochs, all images) into reports/<table>;
# rerunning resumes. Tables III and IV measure ClaDec alone, as the paper's do, and Table IV's classifiers
# take BatchNorm statistics from the data (docs/results/fidelity.md, lead 5). TABLE_FLAGS adds reproduce
# options (e.g. --limit 12000).
TABLE_RUNS ?= 10
TABLE_EPOCHS ?= 64
TABLE_FLAGS ?=
table3_FLAGS = --method cladec
table4_FLAGS = --method cladec --bn-statistics data

.PHONY: help install data test test-fast test-jax test-torch demo demo-full benchmark table2 table3 table4 gpu-wheels clean

help:  ## List the targets
	@grep -E '^[a-z0-9 -]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## Create .venv and install cladec with its dependencies

$(VENV)/.installed: setup.py setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TF)>=2.16" -e ".[test,tensorboard,plots,sanity]"
	touch $@

data:  ## Make sure the real Fashion-MNIST files are installed (Debian package)
	@if [ ! -f $(DATA_DIR)/train-images-idx3-ubyte.gz ] && [ ! -f $${KERAS_HOME:-$$HOME/.keras}/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null; \
	  else \
	    echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' or pass --data-dir"; exit 1; \
	  fi; \
	fi

test: install data  ## Run the test suite
	$(PY) -m pytest -q $(PYTEST_WORKERS)

test-fast: install  ## Run the tests that need no real data
	$(PY) -m pytest -q $(PYTEST_WORKERS) -m "not realdata"

$(JAX_VENV)/.installed: setup.py setup.cfg
	$(PYTHON) -m venv $(JAX_VENV)
	$(JAX_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "jax[cpu]" -e ".[test,tensorboard,plots,sanity,jax]"
	touch $@

test-jax: $(JAX_VENV)/.installed data  ## Run the tests under Keras' JAX backend on the CPU (second venv)
	KERAS_BACKEND=jax $(JAX_VENV)/bin/python -m pytest -q $(PYTEST_WORKERS) -m "not tensorflow_only"

$(TORCH_VENV)/.installed: setup.py setup.cfg
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(TORCH_PIP_FLAGS) torch -e ".[test,plots,sanity]"
	touch $@

test-torch: $(TORCH_VENV)/.installed data  ## Run the tests under Keras' PyTorch backend on the CPU (third venv)
	KERAS_BACKEND=torch $(TORCH_VENV)/bin/python -m pytest -q $(PYTEST_WORKERS) -m "not tensorflow_only"

gpu-wheels: install data  ## Bundle the wheels and data a bare CUDA machine (Python 3.12, JAX) needs, in gpu-bundle/
	rm -rf $(GPU_BUNDLE) && mkdir -p $(GPU_BUNDLE)/wheels $(GPU_BUNDLE)/fashion-mnist
	$(PY) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
	  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
	  --python-version 3.12 --implementation cp -d $(GPU_BUNDLE)/wheels \
	  "keras==$$($(PY) -c 'import keras; print(keras.__version__)')" namex optree filelock
	$(PY) -m pip wheel --quiet --disable-pip-version-check --no-deps -w $(GPU_BUNDLE)/wheels .
	src=$(DATA_DIR); [ -f $$src/train-images-idx3-ubyte.gz ] || src=$${KERAS_HOME:-$$HOME/.keras}/datasets/fashion-mnist; \
	  cp $$src/*-ubyte.gz $(GPU_BUNDLE)/fashion-mnist/
	@du -sh $(GPU_BUNDLE)

demo: install data  ## Classifier, ClaDec decoder and RefAE on a Fashion-MNIST subset; explain; evaluate
	$(CLADEC) demo --limit $(DEMO_LIMIT) --epochs $(DEMO_EPOCHS) --class Bag --out-dir $(DEMO_DIR) --overwrite $(DEMO_FLAGS)

demo-full: install data  ## The demo on all 60,000 training images (DEMO_FULL_EPOCHS epochs a model)
	$(CLADEC) demo --epochs $(DEMO_FULL_EPOCHS) --class Bag --out-dir $(DEMO_FULL_DIR) --overwrite $(DEMO_FLAGS)

benchmark: install data  ## Time every training command against plain Keras: docs/results/speed-<device>.json, .md
	$(CLADEC) benchmark --overwrite $(BENCHMARK_FLAGS)

table2 table3 table4: install data  ## Reproduce the paper's Table II, III or IV (TABLE_RUNS, TABLE_EPOCHS, TABLE_FLAGS)
	$(CLADEC) reproduce $@ --runs $(TABLE_RUNS) --epochs $(TABLE_EPOCHS) --out reports/$@ $($@_FLAGS) $(TABLE_FLAGS)

clean:  ## Remove the virtual environment, caches and demo output (models/ and reports/ stay)
	rm -rf $(VENV) *.egg-info .pytest_cache $(DEMO_DIR) $(DEMO_FULL_DIR)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
