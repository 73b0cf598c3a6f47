"""Shared test configuration."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("KERAS_AUTOREP_DATA", REPO.parent / "shared" / "data"))
CIFAR10_ARCHIVE = DATA_DIR / "cifar10-images.tar.gz"


@pytest.fixture(scope="session")
def cifar10_archive():
    if not CIFAR10_ARCHIVE.exists():
        pytest.skip(f"real CIFAR-10 archive not found at {CIFAR10_ARCHIVE}")
    return CIFAR10_ARCHIVE


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
