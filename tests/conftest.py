"""Shared test configuration."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("KERAS_AUTOREP_DATA", REPO.parent / "shared" / "data"))
CIFAR10_ARCHIVE = DATA_DIR / "cifar10-images.tar.gz"
TINY_IMAGENET_ARCHIVE = DATA_DIR / "tiny-imagenet-200.tar.gz"
# Under CI (``.ci/run`` sets CI=true) what a test needs and lacks fails the
# run; a developer without the data or the runtimes gets skips with reasons.
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason):
    """Skip the test for ``reason`` (missing data, a runtime not built), or
    fail it under CI=true."""
    if CI:
        pytest.fail(f"{reason} (CI=true: the suite must not skip this)",
                    pytrace=False)
    pytest.skip(reason)


def archive(path, name):
    if not path.is_file():
        unavailable(f"real {name} archive not found at {path} (set "
                    "KERAS_AUTOREP_DATA or make test DATA_DIR=...)")
    return path


@pytest.fixture(scope="session")
def cifar10_archive():
    return archive(CIFAR10_ARCHIVE, "CIFAR-10")


@pytest.fixture(scope="session")
def tiny_imagenet_archive():
    return archive(TINY_IMAGENET_ARCHIVE, "Tiny-ImageNet")


@pytest.fixture(scope="session")
def pi_runtimes():
    """The two-party runtimes' virtualenvs (``make pi-env``), all built."""
    from keras_autorep.pi.runtimes import RUNTIMES, interpreter

    try:
        for spec in RUNTIMES.values():
            interpreter(spec)
    except FileNotFoundError as error:
        unavailable(str(error))
    return RUNTIMES


@pytest.fixture
def usage_error(capsys):
    """``usage_error(call, message)``: ``call()`` exits as argparse does on
    bad input, with code 2 and one error line holding ``message``."""
    def check(call, message):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            call()
        assert exit_info.value.code == 2
        errors = [line for line in capsys.readouterr().err.splitlines()
                  if ": error: " in line]
        assert len(errors) == 1 and message in errors[0], errors
    return check


@pytest.fixture(scope="session")
def data_cache_dir(tmp_path_factory):
    """One decode cache for the whole test session."""
    return tmp_path_factory.mktemp("data_cache")


@pytest.fixture(scope="session")
def cifar10_slice(cifar10_archive, data_cache_dir):
    """A small class-balanced slice of the real CIFAR-10 (2,000 / 500)."""
    from keras_autorep.data import load_dataset

    return load_dataset(
        "cifar10",
        data_dir=cifar10_archive,
        cache_dir=data_cache_dir,
        subset=(2000, 500),
        verbose=0,
    )


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true",
                     help="also run the tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def relu_counts(monkeypatch):
    """The models ``count_relus`` counts during the test, one entry per
    call (each call traces through ``counting.trace_model``)."""
    from keras_autorep.graph import counting

    models = []
    trace_model = counting.trace_model

    def recorded(model):
        models.append(model)
        return trace_model(model)

    monkeypatch.setattr(counting, "trace_model", recorded)
    return models
