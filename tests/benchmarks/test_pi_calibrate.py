"""benchmarks/pi_calibrate.py: CHEETAH's calibration programs measured
without their OT buffer refills (the cost model adds them amortised)."""

import keras
import pytest

from keras_autorep.costs.model import calibration

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="the runtimes run beside TensorFlow")


@pytest.fixture
def benchmarks(benchmark):
    return benchmark("cheetah_refills"), benchmark("pi_calibrate")


def test_a_program_is_measured_without_the_refills_it_paid(
        benchmarks, pi_runtimes, tmp_path):
    """16 ReLU nodes on 2,048 elements, 4 inferences after the warm-up:
    the fourth pays a refill (1,281 send actions, ~311 kB); the program's
    figures are those of one node (20 send actions, 201,728 B measured)
    16 times, as if none had."""
    cheetah_refills, pi_calibrate = benchmarks
    refill = calibration()["protocols"]["spu-cheetah"]["refills"]
    (row,) = pi_calibrate.measure_programs(
        "spu-cheetah", [cheetah_refills.chain("Relu", 2048, 16)], 4,
        tmp_path, refill)
    assert sorted(row["refills"]) == [0, 0, 0, 1]
    assert row["rounds"] == 16 * 20
    assert row["bytes"] == pytest.approx(16 * 201_728, rel=0.01)


def test_inferences_that_differ_by_part_of_a_refill_are_refused(
        benchmarks):
    _, pi_calibrate = benchmarks

    def run(actions):
        return {"send_actions": actions, "bytes": 1000, "seconds": 0.1}

    stats = {"runtime": "spu-cheetah", "parties": [
        {"warmup": {"bytes": 5000}, "runs": [run(320), run(320 + 640)]},
        {"warmup": {"bytes": 5000}, "runs": [run(0), run(0)]}]}
    with pytest.raises(RuntimeError, match="other than whole refills"):
        pi_calibrate.without_refills("relu", stats, {"actions": 1281,
                                                     "bytes": 3e5})
