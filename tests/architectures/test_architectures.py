"""keras_autorep.architectures: the ResNets, the registry and the
ReLU-balanced CryptoNAS networks."""

import types

import keras
import numpy as np
import pytest
from keras import layers

from keras_autorep.architectures import (
    MODELS,
    balanced_network,
    balanced_width,
    efficientnet_b0,
    efficientnet_b2,
    get_model,
    relu_network,
    resnet18,
    resnet_small,
    wide_resnet22_8,
)
from keras_autorep.data import normalization_layer
from keras_autorep.graph import count_relus, prunable_relus


def relu_count_by_layer(model):
    """Per-example ReLU elements of each ``ReLU`` layer, by name."""
    return {
        layer.name: int(np.prod(layer.output.shape[1:]))
        for layer in model.layers
        if isinstance(layer, keras.layers.ReLU)
    }


def total_relus(model):
    """The ReLU layers' elements; every ReLU is counted, so this is also
    ``count_relus(model).total``."""
    total = sum(relu_count_by_layer(model).values())
    count = count_relus(model)
    assert count.total == count.kept == total
    return total


@pytest.fixture(scope="module")
def resnet18_snl():
    return resnet18()


@pytest.fixture(scope="module")
def wrn():
    return wide_resnet22_8()


def test_resnet18_snl_count(resnet18_snl):
    # The SNL reference code has no stem ReLU (bn1(conv1(x)) goes straight
    # into the first block): 491,520 ReLUs, every one counted.
    assert total_relus(resnet18_snl) == 491_520
    names = [layer.name for layer in resnet18_snl.layers]
    assert "stem_relu" not in names
    assert not any("uncounted" in name for name in names)
    stem_bn = resnet18_snl.get_layer("stem_bn")
    assert stem_bn.output.shape[1:] == (32, 32, 64)
    assert not any(isinstance(layer, keras.layers.ReLU)
                   for layer in resnet18_snl.layers[:names.index("stem_bn")])
    first_relu = next(layer for layer in resnet18_snl.layers
                      if isinstance(layer, keras.layers.ReLU))
    assert first_relu.name == "stage1_block0_relu1"
    assert resnet18_snl.name == "resnet18"


def test_resnet18_senet_count():
    model = resnet18(relu_convention="senet")
    assert total_relus(model) == 557_056
    assert "stem_relu" in relu_count_by_layer(model)
    assert relu_count_by_layer(model)["stem_relu"] == 32 * 32 * 64
    assert 557_056 - 491_520 == 32 * 32 * 64


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="relu_elements reads a TensorFlow graph")
def test_resnet18_snl_graph_computes_exactly_the_counted_relus(resnet18_snl):
    from keras_autorep.export import relu_elements
    from keras_autorep.export.saved_model import serving_function

    assert relu_elements(serving_function(resnet18_snl)) == 491_520


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
    assert total_relus(wrn) == 1_359_872  # every ReLU counted
    assert not any("uncounted" in layer.name for layer in wrn.layers)
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
    assert set(MODELS) == {"resnet18", "wide_resnet22_8", "resnet_small",
                           "efficientnet_b0", "efficientnet_b2"}


def test_get_model_unknown_name():
    with pytest.raises(ValueError, match="resnet18"):
        get_model("vgg16")


# ------------------------------------------------------------------ balanced


def stage_counts(model):
    """Counted ReLUs per stage of a balanced network."""
    counts = {}
    for row in count_relus(model).rows:
        stage = row.layer.split("_")[0]
        counts[stage] = counts.get(stage, 0) + row.total
    return counts


@pytest.mark.parametrize("budget, depth, stages, stem_stride, width", [
    (1000, 1, 3, 1, 5),      # 1000 // (3 * 64)
    (1000, 2, 3, 1, 2),      # 1000 // (6 * 64)
    (1000, 1, 2, 2, 31),     # 1000 // (2 * 16): 4x4 first stage
    (192, 1, 3, 1, 1),       # exactly the smallest network
])
def test_balanced_network_fills_the_budget_with_equal_stages(
        budget, depth, stages, stem_stride, width):
    assert balanced_width(budget, depth, (8, 8, 3), stages, stem_stride) \
        == width
    model = balanced_network(budget, depth, input_shape=(8, 8, 3),
                             num_classes=3, stages=stages,
                             stem_stride=stem_stride)
    total = count_relus(model).total
    assert total <= budget
    per_stage = stage_counts(model)
    assert len(per_stage) == stages
    assert set(per_stage.values()) == {total // stages}
    assert total == stages * depth * width * (8 // stem_stride) ** 2
    # channels x4 at every halving of H and W
    relu = model.get_layer(f"stage{stages}_layer1_relu")
    assert relu.output.shape[-1] == width * 4 ** (stages - 1)


def test_balanced_network_skip_paths_hold_no_relus():
    model = balanced_network(1000, 2, input_shape=(8, 8, 3), num_classes=3)
    plain = balanced_network(1000, 2, input_shape=(8, 8, 3), num_classes=3,
                             skip=False)
    assert count_relus(model).total == count_relus(plain).total
    assert any(isinstance(layer, layers.Add) for layer in model.layers)
    assert prunable_relus(model, skip_paths=True) == {}


def test_balanced_network_rejects_budgets_and_shapes_it_cannot_meet():
    with pytest.raises(ValueError, match="below 192"):
        balanced_width(191, 1, (8, 8, 3))
    with pytest.raises(ValueError, match="cannot be divided"):
        balanced_width(10_000, 1, (10, 10, 3))
    with pytest.raises(ValueError, match="relative to the model"):
        balanced_width("10%", 1, (8, 8, 3))


def test_relu_network_of_a_given_width():
    model = relu_network(2, 1, input_shape=(8, 8, 3), num_classes=3,
                         stages=2, name="net")
    assert model.name == "net" and model.output.shape == (None, 3)
    assert total_relus(model) == 2 * 1 * 2 * 8 * 8
    assert set(stage_counts(model).values()) == {128}
    with pytest.raises(ValueError, match="width"):
        relu_network(0, 1, input_shape=(8, 8, 3))


# ------------------------------------------------------------ efficientnet


def test_efficientnet_takes_unit_images_and_keeps_statistics_in_weights(
        tmp_path):
    """[0, 1] input, the dataset statistics inside the model's own
    normalisation (so a weights file carries them), all-SiLU sites, weight
    decay on every kernel, and a weights-file round trip."""
    info = types.SimpleNamespace(mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    model = efficientnet_b2(input_shape=(32, 32, 3), num_classes=5,
                            weight_decay=1e-5,
                            preprocessing=normalization_layer(info))
    assert model.name == "efficientnet_b2"
    assert model.output.shape == (None, 5)
    norm = next(layer for layer in model.layers
                if isinstance(layer, keras.layers.Normalization))
    x = np.full((1, 32, 32, 3), 0.5, "float32")
    probe = keras.Model(model.input, norm.output)
    expected = (0.5 - np.array(info.mean)) / np.array(info.std)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(probe(x))[0, 0, 0], expected, rtol=1e-5)
    kernels = [layer for layer in model.layers
               if isinstance(layer, (keras.layers.Conv2D,
                                     keras.layers.DepthwiseConv2D,
                                     keras.layers.Dense))]
    assert len(model.losses) == len(kernels) > 0
    count = count_relus(model)
    assert count.total == 0  # no ReLU: SiLU sites, selectable with silu
    assert count.selectable(("silu",)) == count.selectable(("swish",)) > 0
    assert {row.activation for row in count.other} == {"silu", "sigmoid"}

    path = tmp_path / "b2.weights.h5"
    model.save_weights(path)
    again = efficientnet_b2(input_shape=(32, 32, 3), num_classes=5)
    again.load_weights(path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again(x)),
                                  keras.ops.convert_to_numpy(model(x)))
    with pytest.raises(ValueError, match="preprocessing=None with weights"):
        efficientnet_b0(input_shape=(32, 32, 3), weights=str(path),
                        preprocessing=normalization_layer(info))
