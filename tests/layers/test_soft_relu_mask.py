"""SoftReLUMask: SNL's continuous mask, its threshold and serialisation."""

import keras
import numpy as np
import pytest

from keras_autorep import SoftReLUMask
from layer_contract import check_layer_contract

pytestmark = pytest.mark.backend_agnostic


@pytest.mark.parametrize("granularity", ["pixel", "channel"])
def test_soft_relu_mask_formula_constraint_and_roundtrip(granularity,
                                                      tmp_path):
    rng = np.random.default_rng(0)
    values = {}

    def random_mask(layer):
        values["m"] = rng.random(layer.mask.shape).astype("float32")
        layer.mask.assign(values["m"])

    model, loaded, x = check_layer_contract(
        lambda: SoftReLUMask(granularity, name="soft"), (2, 2, 3), tmp_path,
        conv=False, prepare=random_mask,
    )
    layer = model.get_layer("soft")
    m = values["m"]
    assert layer.mask.shape == ((2, 2, 3) if granularity == "pixel" else (3,))
    assert layer.relus_per_indicator == (1 if granularity == "pixel" else 4)
    assert layer.total_relus == 12
    expected = m * np.maximum(x, 0) + (1 - m) * x
    np.testing.assert_allclose(model(x), expected, rtol=1e-6)
    assert np.array_equal(
        keras.ops.convert_to_numpy(layer.mask.constraint(m * 4 - 2)),
        np.clip(m * 4 - 2, 0, 1),
    )
    assert loaded.get_layer("soft").get_config() == layer.get_config()
    np.testing.assert_allclose(loaded(x), expected, rtol=1e-6)


@pytest.mark.parametrize("granularity", ["pixel", "channel"])
def test_soft_relu_mask_after_a_conv_keeps_the_layer_contract(granularity,
                                                           tmp_path):
    model, reloaded, _ = check_layer_contract(
        lambda: SoftReLUMask(granularity, threshold=0.2), (4, 4, 3), tmp_path)
    assert reloaded.layers[-1].threshold == 0.2
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(reloaded.layers[-1].mask),
        keras.ops.convert_to_numpy(model.layers[-1].mask))


def test_threshold_is_configured_and_counts_kept_relus():
    assert SoftReLUMask().threshold == 1e-2
    assert SoftReLUMask().get_config()["threshold"] == 1e-2
    layer = SoftReLUMask(threshold=0.25)
    layer.build((None, 2, 2, 3))
    assert layer.get_config()["threshold"] == 0.25
    assert float(keras.ops.convert_to_numpy(layer.kept_relus())) == 12.0
    mask = np.full((2, 2, 3), 0.5, "float32")
    mask[0, 0] = [0.25, 0.1, 0.0]  # at or below the threshold: not kept
    layer.mask.assign(mask)
    assert float(keras.ops.convert_to_numpy(layer.kept_relus())) == 9.0
    channel = SoftReLUMask("channel")
    channel.build((None, 2, 2, 3))
    channel.mask.assign(np.array([1.0, 0.005, 0.02], "float32"))
    assert float(keras.ops.convert_to_numpy(channel.kept_relus())) == 8.0


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda: SoftReLUMask(granularity="row"),
         "granularity must be one of .*, got 'row'"),
        (lambda: SoftReLUMask(threshold=1.0),
         r"threshold must be in \[0, 1\), got 1.0"),
        (lambda: SoftReLUMask(threshold=-0.1),
         r"threshold must be in \[0, 1\), got -0.1"),
    ],
    ids=["granularity", "threshold_one", "threshold_negative"],
)
def test_bad_arguments_raise(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()
