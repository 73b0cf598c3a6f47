"""Shared test configuration."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("KERAS_AUTOREP_DATA", REPO.parent / "shared" / "data"))
CIFAR10_ARCHIVE = DATA_DIR / "cifar10-images.tar.gz"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "backend_agnostic: layer/conversion tests also run under KERAS_BACKEND=jax",
    )


@pytest.fixture(scope="session")
def cifar10_archive():
    if not CIFAR10_ARCHIVE.exists():
        pytest.skip(f"real CIFAR-10 archive not found at {CIFAR10_ARCHIVE}")
    return CIFAR10_ARCHIVE
