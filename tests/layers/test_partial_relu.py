"""PartialReLU: the hardened layer, ReLU on its kept positions only."""

import keras
import numpy as np
import pytest

from keras_autorep import PartialReLU
from keras_autorep.dapa import evaluate_polynomial
from backend_utils import op_names
from layer_contract import check_layer_contract

pytestmark = pytest.mark.backend_agnostic

RNG = np.random.default_rng(0)


def masked_reference(x, mask, coefficients):
    poly = evaluate_polynomial(x, coefficients)
    return np.where(mask, np.maximum(x, 0), poly)


def test_partial_relu_keeps_the_layer_contract(tmp_path):
    coefficients = RNG.normal(size=(3, 4))
    model, reloaded, _ = check_layer_contract(
        lambda: PartialReLU(num_kept=3, kept_indices=[0, 7, 20],
                            coefficients=coefficients),
        (4, 4, 3), tmp_path,
    )
    again = reloaded.layers[-1]
    assert again.num_kept == 3
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(again.kept_indices), [0, 7, 20])
    np.testing.assert_array_equal(again.kept_mask(),
                                  model.layers[-1].kept_mask())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(again.coefficients), coefficients,
        rtol=1e-6)


@pytest.mark.parametrize("merge", ["scatter", "gather"])
@pytest.mark.parametrize("kept", [0, 5, 35, 36])
def test_partial_relu_matches_masked_formula(kept, merge):
    """Both forms (scatter for serving, gathers for PI) compute
    ``where(mask, relu(x), p(x))``."""
    shape = (3, 3, 4)
    indices = RNG.choice(36, size=kept, replace=False)
    coefficients = RNG.normal(size=(3, 4)).astype("float32")
    layer = PartialReLU(num_kept=kept, kept_indices=indices,
                        coefficients=coefficients, merge=merge)
    x = RNG.normal(size=(5,) + shape).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    mask = np.zeros(36, bool)
    mask[indices] = True
    np.testing.assert_allclose(
        y, masked_reference(x, mask.reshape(shape), coefficients), atol=1e-5
    )
    np.testing.assert_array_equal(layer.kept_mask(), mask.reshape(shape))
    assert not layer.trainable_weights


def test_the_pi_form_is_chosen_by_argument_not_by_ambient_state():
    """``merge`` alone decides the graph: the default scatters, ``"gather"``
    has no scatter op, and a default layer traced after a gather one still
    scatters; configs without ``merge`` (files written before it existed)
    load with the default."""
    x = RNG.normal(size=(2, 3, 3, 4)).astype("float32")

    def layer(**options):
        return PartialReLU(num_kept=5, kept_indices=np.arange(5),
                           coefficients=RNG.normal(size=(3, 4)), **options)

    def scatters(fn):
        return any("scatter" in name.lower() for name in op_names(fn, x))

    serving, pi = layer(), layer(merge="gather")
    assert scatters(serving) and not scatters(pi)
    assert scatters(serving)
    config = serving.get_config()
    assert config["merge"] == "scatter"
    assert pi.get_config()["merge"] == "gather"
    del config["merge"]
    assert PartialReLU.from_config(config).merge == "scatter"
    with pytest.raises(ValueError, match="merge"):
        layer(merge="global")


@pytest.mark.parametrize("kept", [0, 36], ids=["none", "all"])
def test_sites_keeping_none_or_all_emit_one_branch_with_identical_output(
        kept):
    """No ReLU on an empty tensor, no polynomial when all are kept; the
    outputs are exactly those of the gather/scatter form's branch."""
    shape = (3, 3, 4)
    coefficients = RNG.normal(size=(3, 4)).astype("float32")
    layer = PartialReLU(num_kept=kept, kept_indices=np.arange(kept),
                        coefficients=coefficients)
    x = RNG.normal(size=(2,) + shape).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    flat = x.reshape(2, -1)
    if kept:
        expected = np.maximum(flat, 0)
    else:
        per_element = coefficients[:, np.arange(36) % 4]
        expected = keras.ops.convert_to_numpy(
            evaluate_polynomial(flat, per_element))
    np.testing.assert_array_equal(y, expected.reshape(x.shape))


def test_partial_relu_rejects_bad_positions():
    layer = PartialReLU(num_kept=2)
    layer.build((None, 2, 2, 1))
    for bad, message in (([0], "expected 2 distinct kept indices, got 1"),
                         ([1, 1], r"got 2 \(1 distinct\)"),
                         ([0, 4], r"kept indices must lie in \[0, 4\)"),
                         ([-1, 2], r"kept indices must lie in \[0, 4\)")):
        with pytest.raises(ValueError, match=message):
            layer.set_kept_positions(bad)
    with pytest.raises(ValueError, match="exceeds"):
        PartialReLU(num_kept=5).build((None, 2, 2, 1))


@pytest.mark.parametrize(
    "factory, message",
    [(lambda: PartialReLU(num_kept=-1), "num_kept must be >= 0, got -1"),
     (lambda: PartialReLU(2, degree=3),
      "replacement must be one of .*, got 'poly3'")],
    ids=["num_kept", "degree"],
)
def test_bad_arguments_raise(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()
