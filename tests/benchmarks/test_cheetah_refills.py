"""benchmarks/cheetah_refills.py: CHEETAH's OT refills counted in a real
two-party session, and its one-line errors."""

import json

import keras
import pytest

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="the runtimes run beside TensorFlow")


@pytest.fixture
def refills(benchmark):
    return benchmark("cheetah_refills")


@pytest.mark.parametrize("program, message", [
    ("Relu:2048", "expected OP:N:K"),
    ("Tanh:2048:1", "OP one of"),
    ("Relu:0:1", "N and K positive"),
])
def test_a_bad_program_is_a_one_line_error(refills, usage_error, program,
                                           message):
    usage_error(lambda: refills.main(["--programs", program]), message)


def test_a_relu_chain_refills_its_ot_buffer_every_few_inferences(
        refills, pi_runtimes, capsys):
    """16 ReLUs on 2,048 elements: the third inference after the warm-up
    empties the buffer (measured: 6 refills in 24 inferences)."""
    refills.main(["--images", "4", "--programs", "Relu:2048:16"])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["program"] == "Relu_2048x16" and row["elements"] == 32768
    assert row["base_actions"] > 16 and row["whole_refills"]
    assert sorted(row["extra_actions"]) == [0, 0, 0, refills.REFILL_ACTIONS]
    assert row["refills_per_element"] == pytest.approx(1 / (4 * 32768))
