# keras_autorep: `make test` and `make demo` work on a fresh machine with
# nothing but Python 3.10+ (they create .venv and install what is needed).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_DIR ?= ../shared/data
CIFAR10_ARCHIVE := $(DATA_DIR)/cifar10-images.tar.gz
# The two-party runtimes, each in its own virtualenv in this checkout (they
# share no package versions with the project): `python -m keras_autorep.pi
# setup` builds them from the requirement files shipped in
# keras_autorep/pi/runners/, and keras_autorep.pi drives them through files.
# The stamps keep `make test` from rebuilding them every time (envs.py
# holds the setup steps and the crypten pin).
RUNNERS := keras_autorep/pi/runners
CRYPTEN_STAMP := .venv-crypten/.installed
SPU_STAMP := .venv-spu/.installed

.PHONY: install pi-env test demo clean

$(STAMP): requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

$(CRYPTEN_STAMP): $(RUNNERS)/requirements-crypten.txt keras_autorep/pi/envs.py | $(STAMP)
	$(PY) -m keras_autorep.pi setup --envs $(CURDIR) --runtime crypten
	touch $@

$(SPU_STAMP): $(RUNNERS)/requirements-spu.txt keras_autorep/pi/envs.py | $(STAMP)
	$(PY) -m keras_autorep.pi setup --envs $(CURDIR) --runtime spu
	touch $@

pi-env: $(CRYPTEN_STAMP) $(SPU_STAMP)

# The import contracts (.importlinter) keep the pipeline's layers in order;
# the TensorFlow backend runs the whole suite; the layer and conversion tests
# run again under JAX so the code stays backend-agnostic. The PI tests run
# real two-party inferences in the runtimes pi-env builds. The tests read
# the real data from DATA_DIR; without it they skip, and under CI=true (as
# CI services set it) a missing archive or runtime fails the run.
test: export KERAS_AUTOREP_DATA = $(abspath $(DATA_DIR))
test: $(STAMP) pi-env
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q tests
	KERAS_BACKEND=jax $(PY) -m pytest -q -m backend_agnostic tests

demo: $(STAMP)
	$(PY) recipes/cifar10.py --budget 12.9k --quick \
		$(if $(wildcard $(CIFAR10_ARCHIVE)),--data-dir $(CIFAR10_ARCHIVE))

clean:
	rm -rf $(VENV) .venv-crypten .venv-spu .pytest_cache
