"""benchmarks/overhead.py: what it records of the machine's load, its
refusal of a busy machine, and the hardened models it measures."""

import argparse
import importlib.util
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_autorep.graph.sites import PARTIAL_RELU, sites

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "overhead.py"


@pytest.fixture(scope="module")
def overhead():
    spec = importlib.util.spec_from_file_location("overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_load_excludes_this_process(overhead):
    with overhead.Load() as load:
        end = time.process_time() + 0.5
        while time.process_time() < end:  # this process's own CPU
            pass
    # Others' share: whatever else the machine ran, never this loop's
    # half second on one core counted twice.
    assert 0.0 <= load.other_share <= 1.0
    assert load.load_before >= 0 and load.load_after >= 0


def test_a_busy_machine_is_refused_unless_allowed(overhead, capsys):
    busy = argparse.Namespace(max_busy=-1.0, wait=0.0, allow_busy=False)
    with pytest.raises(SystemExit, match=r"^benchmarks/overhead.py: error: "
                       r"the machine is busy: other processes use \d+%"):
        overhead.wait_until_idle(busy)
    busy.allow_busy = True
    overhead.wait_until_idle(busy)
    assert "(--allow-busy)" in capsys.readouterr().err


def test_ratio_rows_give_their_spread(overhead):
    args = argparse.Namespace(runs=3, rounds=2, repeats=1)
    calls = []
    row = overhead.measured(lambda: calls.append("a"),
                            lambda: calls.append("b"), args)
    # One warm-up pair per run, then interleaved rounds.
    assert calls == ["a", "b", "a", "b", "a", "b"] * 3
    assert row["low"] <= row["ratio"] <= row["high"]
    assert set(row) >= {"plain_s", "other_s", "load_before", "load_after",
                        "other_share"}


def test_rows_without_relus_compute_no_site(overhead):
    plain, x, _ = overhead.model_and_data("resnet_small", 2)
    # Lines after a convolution fold into it (an identity remains); those
    # after a residual sum stay lines.
    folded = overhead.hardened_copy(plain, 0.0, "poly1")
    assert {(site.layer.form, site.layer.num_kept)
            for site in sites(folded, (PARTIAL_RELU,))} == {
                ("identity", 0), ("poly1", 0)}
    identity = overhead.hardened_copy(plain, 0.0, "identity")
    assert {(site.layer.form, site.layer.num_kept)
            for site in sites(identity, (PARTIAL_RELU,))} == {("identity", 0)}
    for model in (folded, identity):
        assert not any(isinstance(layer, keras.layers.ReLU)
                       for layer in model.layers)
        assert np.all(np.isfinite(model.predict_on_batch(x)))
    kept = overhead.hardened_copy(plain, 0.1, "poly1")
    assert {site.layer.form for site in sites(kept, (PARTIAL_RELU,))} == {
        "poly1"}
