import keras
import numpy as np
import pytest

from keras_autorep.models import (
    MODELS,
    get_model,
    resnet18,
    resnet_small,
    wide_resnet22_8,
)


def relu_count_by_layer(model):
    """Per-example ReLU elements of each counted ``ReLU`` layer, by name."""
    return {
        layer.name: int(np.prod(layer.output.shape[1:]))
        for layer in model.layers
        if isinstance(layer, keras.layers.ReLU)
        and not layer.name.endswith("_uncounted")
    }


def total_relus(model):
    return sum(relu_count_by_layer(model).values())


@pytest.fixture(scope="module")
def resnet18_snl():
    return resnet18()


@pytest.fixture(scope="module")
def wrn():
    return wide_resnet22_8()


def test_resnet18_snl_count(resnet18_snl):
    assert total_relus(resnet18_snl) == 491_520
    assert resnet18_snl.get_layer("stem_relu_uncounted").output.shape[1:] == (
        32,
        32,
        64,
    )
    assert resnet18_snl.name == "resnet18"


def test_resnet18_senet_count():
    model = resnet18(relu_convention="senet")
    assert total_relus(model) == 557_056
    assert "stem_relu" in relu_count_by_layer(model)


def test_resnet18_tiny_imagenet():
    model = resnet18(input_shape=(64, 64, 3), num_classes=200)
    assert total_relus(model) == 1_966_080
    assert model.output.shape == (None, 200)


def test_resnet18_invalid_convention():
    with pytest.raises(ValueError, match="bogus"):
        resnet18(relu_convention="bogus")


def test_wide_resnet22_8_count(wrn):
    counts = relu_count_by_layer(wrn)
    assert sum(counts.values()) == 1_359_872
    assert counts["group1_block0_relu1"] == 16 * 32 * 32
    assert counts["group2_block0_relu1"] == 128 * 32 * 32
    assert counts["group3_block0_relu2"] == 512 * 8 * 8
    assert not any(layer.name.endswith("_uncounted") for layer in wrn.layers)
    assert wrn.output.shape == (None, 10)
    assert wrn.name == "wide_resnet22_8"


@pytest.mark.parametrize("model_fixture", ["resnet18_snl", "wrn"])
def test_only_relu_activations_and_logits(model_fixture, request):
    model = request.getfixturevalue(model_fixture)
    for layer in model.layers:
        if hasattr(layer, "activation"):
            assert layer.activation is keras.activations.linear, layer.name
    assert isinstance(model.layers[-1], keras.layers.Dense)


def test_resnet_small_count_shape_and_forward():
    model = resnet_small(num_classes=7)
    assert total_relus(model) == 73_728
    assert model.name == "resnet_small"
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    logits = keras.ops.convert_to_numpy(model(x, training=False))
    assert logits.shape == (2, 7)
    assert np.all(np.isfinite(logits))


def test_resnet_small_count_64():
    assert total_relus(resnet_small(input_shape=(64, 64, 3))) == 4 * 73_728


def test_weight_decay_adds_losses():
    model = resnet_small(weight_decay=5e-4)
    assert len(model.losses) > 0
    assert len(resnet_small().losses) == 0


def test_get_model():
    model = get_model("resnet_small", num_classes=3)
    assert model.output.shape == (None, 3)
    assert set(MODELS) == {"resnet18", "wide_resnet22_8", "resnet_small"}


def test_get_model_unknown_name():
    with pytest.raises(ValueError, match="resnet18"):
        get_model("vgg16")
