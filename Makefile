# cladec: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLADEC := $(VENV)/bin/cladec
# TensorFlow distribution: tensorflow[and-cuda] where nvidia-smi finds a GPU, else tensorflow-cpu.
TF ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo 'tensorflow[and-cuda]' || echo tensorflow-cpu)
JAX_VENV ?= .venv-jax
GPU_BUNDLE ?= gpu-bundle
DATA_DIR := /usr/share/datasets/fashion-mnist
DEMO_DIR ?= demo
DEMO_EPOCHS ?= 3
DEMO_FLAGS ?=

.PHONY: help install data test test-fast test-jax demo benchmark gpu-wheels clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## Create .venv and install cladec with its dependencies

$(VENV)/.installed: setup.py setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "$(TF)>=2.16" -e ".[test,tensorboard]"
	touch $@

data:  ## Make sure the real Fashion-MNIST files are installed (Debian package)
	@if [ ! -f $(DATA_DIR)/train-images-idx3-ubyte.gz ] && [ ! -f $$HOME/.keras/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null; \
	  else \
	    echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' or pass --data-dir"; exit 1; \
	  fi; \
	fi

test: install data  ## Run the test suite
	$(PY) -m pytest -q

test-fast: install  ## Run the tests that need no real data
	$(PY) -m pytest -q -m "not realdata"

$(JAX_VENV)/.installed: setup.py setup.cfg
	$(PYTHON) -m venv $(JAX_VENV)
	$(JAX_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "jax[cpu]" -e ".[test,tensorboard]"
	touch $@

test-jax: $(JAX_VENV)/.installed data  ## Run the tests under Keras' JAX backend on the CPU (second venv)
	KERAS_BACKEND=jax $(JAX_VENV)/bin/python -m pytest -q -m "not tensorflow_only"

gpu-wheels: install  ## Bundle the wheels and data a bare CUDA machine (Python 3.12, JAX) needs, in gpu-bundle/
	rm -rf $(GPU_BUNDLE) && mkdir -p $(GPU_BUNDLE)/wheels $(GPU_BUNDLE)/fashion-mnist
	$(PY) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
	  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
	  --python-version 3.12 --implementation cp -d $(GPU_BUNDLE)/wheels \
	  "keras==$$($(PY) -c 'import keras; print(keras.__version__)')" namex optree
	$(PY) -m pip wheel --quiet --disable-pip-version-check --no-deps -w $(GPU_BUNDLE)/wheels .
	cp $(DATA_DIR)/*-ubyte.gz $(GPU_BUNDLE)/fashion-mnist/
	@du -sh $(GPU_BUNDLE)

demo: install data  ## Train a classifier, a ClaDec decoder and a RefAE on Fashion-MNIST; explain; evaluate
	$(CLADEC) train-classifier --epochs $(DEMO_EPOCHS) --out $(DEMO_DIR)/classifier.h5 --overwrite $(DEMO_FLAGS)
	$(CLADEC) train-decoder --classifier $(DEMO_DIR)/classifier.h5 --layer -1 --alpha 0 --epochs $(DEMO_EPOCHS) \
	  --out $(DEMO_DIR)/cladec_L-1_a0.h5 --overwrite $(DEMO_FLAGS)
	$(CLADEC) train-refae --classifier $(DEMO_DIR)/classifier.h5 --layer -1 --epochs $(DEMO_EPOCHS) \
	  --out $(DEMO_DIR)/refae_L-1.h5 --overwrite $(DEMO_FLAGS)
	$(CLADEC) explain --classifier $(DEMO_DIR)/classifier.h5 --decoder $(DEMO_DIR)/cladec_L-1_a0.h5 \
	  --refae $(DEMO_DIR)/refae_L-1.h5 --class Bag --count 6 --out $(DEMO_DIR)/explain_L-1.png --overwrite
	$(CLADEC) evaluate --classifier $(DEMO_DIR)/classifier.h5 --decoder $(DEMO_DIR)/cladec_L-1_a0.h5 \
	  --refae $(DEMO_DIR)/refae_L-1.h5 --eval-epochs $(DEMO_EPOCHS) --out $(DEMO_DIR)/metrics.json --overwrite
	@echo "demo: grid in $(DEMO_DIR)/explain_L-1.png, numbers in $(DEMO_DIR)/metrics.json and $(DEMO_DIR)/metrics.md"

benchmark: install data  ## Seconds per epoch of each training command against plain Keras
	$(PY) benchmarks/speed.py

clean:  ## Remove the virtual environment, caches and demo output (models/ and reports/ stay)
	rm -rf $(VENV) *.egg-info .pytest_cache $(DEMO_DIR)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
