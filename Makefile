# keras_autorep: `make test` and `make demo` work on a fresh machine with
# nothing but Python 3.10+ (they create .venv and install what is needed).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_DIR ?= ../shared/data
CIFAR10_ARCHIVE := $(DATA_DIR)/cifar10-images.tar.gz

.PHONY: install test demo clean

$(STAMP): requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The import contracts (.importlinter) keep the pipeline's layers in order;
# the TensorFlow backend runs the whole suite; the layer and conversion tests
# run again under JAX so the code stays backend-agnostic.
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q tests
	KERAS_BACKEND=jax $(PY) -m pytest -q -m backend_agnostic tests

demo: $(STAMP)
	$(PY) recipes/cifar10.py --budget 12.9k --quick \
		$(if $(wildcard $(CIFAR10_ARCHIVE)),--data-dir $(CIFAR10_ARCHIVE))

clean:
	rm -rf $(VENV) .pytest_cache
