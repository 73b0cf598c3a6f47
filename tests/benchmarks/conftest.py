"""Fixtures of the benchmark scripts' tests."""

import importlib
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def benchmark(monkeypatch):
    """``benchmark(name)``: the script ``benchmarks/<name>.py`` as a
    module (the folder on ``sys.path``, as when it runs, so that its
    imports of its neighbours work)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module
