"""Nested models (a model inside a preprocessing model, Sequential inside
functional, several levels deep) convert, count, harden and export like
their flattened twins."""

import keras
import numpy as np
import pytest

import keras_autorep as ka
from keras_autorep.graph.sites import selectors

pytestmark = pytest.mark.backend_agnostic
SHAPE = (8, 8, 3)


def base_layers():
    """The layers of a small CNN with a fused ReLU, a ReLU layer and a
    residual ReLU6 (built once, so twins share weights)."""
    return {
        "stem": keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                                    name="stem"),
        "conv": keras.layers.Conv2D(4, 3, padding="same", name="conv"),
        "relu": keras.layers.ReLU(name="relu"),
        "relu6": keras.layers.ReLU(6.0, name="relu6"),
        "pool": keras.layers.GlobalAveragePooling2D(name="pool"),
        "head": keras.layers.Dense(3, name="head"),
    }


def run_base(layers, x):
    x = layers["stem"](x)
    x = layers["relu"](layers["conv"](x))
    x = layers["relu6"](x)
    return layers["head"](layers["pool"](x))


def flat_and_nested(depth):
    """The flattened model and the same layers nested ``depth`` levels:
    an application-like functional base inside a preprocessing model,
    and at depth 3 a Sequential block inside a functional one inside the
    outer model."""
    keras.utils.set_random_seed(depth)
    layers = base_layers()
    rescale = keras.layers.Rescaling(2.0, -1.0, name="rescale")
    inputs = keras.Input(SHAPE)
    flat = keras.Model(inputs, run_base(layers, rescale(inputs)))
    inner_in = keras.Input(SHAPE)
    if depth == 2:
        base = keras.Model(inner_in, run_base(layers, inner_in), name="base")
    else:
        block = keras.Sequential([keras.Input(SHAPE), layers["stem"]],
                                 name="block")
        middle_in = keras.Input(SHAPE)
        middle = keras.Model(middle_in, block(middle_in), name="middle")
        x = middle(inner_in)
        x = layers["relu6"](layers["relu"](layers["conv"](x)))
        base = keras.Model(inner_in, layers["head"](layers["pool"](x)),
                           name="base")
    outer_in = keras.Input(SHAPE)
    nested = keras.Model(outer_in, base(rescale(outer_in)), name="outer")
    return flat, nested


@pytest.mark.parametrize("depth", [2, 3])
def test_nested_models_convert_count_and_harden_like_flat_ones(depth,
                                                               tmp_path):
    flat, nested = flat_and_nested(depth)
    x = np.random.default_rng(0).random((2,) + SHAPE).astype("float32")
    np.testing.assert_allclose(nested(x), flat(x), atol=1e-6)
    converted = {}
    for name, model in (("flat", flat), ("nested", nested)):
        converted[name] = ka.replace_relus(model, activations=("relu",
                                                               "relu6"))
        count = ka.count_relus(converted[name])
        assert count.total == ka.count_relus(model).total + 8 * 8 * 4
        assert len(selectors(converted[name])) == 3
        np.testing.assert_allclose(converted[name](x), model(x), atol=1e-5)
    counts = {name: ka.count_relus(model) for name, model in
              converted.items()}
    assert counts["nested"].total == counts["flat"].total
    assert ([(row.total, row.kept) for row in counts["nested"].rows]
            == [(row.total, row.kept) for row in counts["flat"].rows])
    hardened = ka.harden(converted["nested"], budget=100)
    assert isinstance(hardened.get_layer("base"), keras.Model)
    assert ka.count_relus(hardened).kept <= 100
    flat_hardened = ka.harden(converted["flat"], budget=100)
    assert ka.count_relus(hardened).kept == ka.count_relus(
        flat_hardened).kept
    hardened.save(tmp_path / "nested.keras")
    reloaded = keras.saving.load_model(tmp_path / "nested.keras")
    np.testing.assert_allclose(reloaded(x), hardened(x), atol=1e-6)


def test_nested_model_exports(tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("export needs TensorFlow")
    from keras_autorep.export import export_all, onnx_relu_elements

    _, nested = flat_and_nested(3)
    hardened = ka.harden(ka.replace_relus(nested), budget=50)
    count = ka.count_relus(hardened)
    version = export_all(hardened, tmp_path, "nested")
    assert onnx_relu_elements(version / "model.onnx") == count.graph_relus
