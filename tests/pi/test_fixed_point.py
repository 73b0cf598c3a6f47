"""keras_autorep.pi.fixed_point: the exported ONNX graph evaluated in the
runtimes' fixed-point formats, against hand-computed grids, Keras, and
the ring's bounds."""

import keras
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import keras_autorep as ka
from keras_autorep.export import export_onnx
from keras_autorep.pi.fixed_point import (
    FORMATS,
    FixedPointFormat,
    fixed_point_check,
    fixed_point_run,
)
from pi_models import harden_sites, teacher


def test_formats_are_the_runtimes_rings():
    crypten, spu = FORMATS["crypten"], FORMATS["spu-fm64"]
    assert (crypten.fractional_bits, spu.fractional_bits) == (16, 18)
    assert crypten.value_bound == 2.0**47 and crypten.product_bound == 2.0**31
    assert spu.value_bound == 2.0**45 and spu.product_bound == 2.0**27


def _graph(nodes, constants, classes=3):
    """An ONNX model of ``nodes`` on an input ``x`` (1, 3) to ``y``."""
    graph = helper.make_graph(
        nodes, "toy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                       [1, classes])],
        [numpy_helper.from_array(np.asarray(v, np.float32), name)
         for name, v in constants.items()])
    return helper.make_model(graph,
                             opset_imports=[helper.make_opsetid("", 13)])


def test_products_truncate_to_the_grid_and_are_tracked():
    """``y = (x * c) * x + b``: operands rounded to 2^-f, each product
    floored to the grid, the sum exact; the largest product before its
    truncation and the largest value are the ones of the nodes."""
    third = [1 / 3, 1 / 3, 1 / 3]
    model = _graph([
        helper.make_node("Mul", ["x", "c"], ["xc"], name="scale"),
        helper.make_node("Mul", ["xc", "x"], ["xcx"], name="square"),
        helper.make_node("Add", ["xcx", "b"], ["y"], name="shift"),
    ], {"c": third, "b": [0.1, 0.2, 100.0]})
    x = np.array([[1.5, -7.25, 1000.0]])
    fmt = FixedPointFormat("toy", 4)
    run = fixed_point_run(model, x, fmt)

    def grid(v, floor=False):
        return (np.floor if floor else np.round)(np.asarray(v) * 16) / 16

    xc = grid(x * grid(third), floor=True)
    expected = grid(xc * x, floor=True) + grid([0.1, 0.2, 100.0])
    np.testing.assert_array_equal(run.logits, expected)
    assert run.largest_product == pytest.approx(abs(xc[0, 2] * 1000.0))
    assert run.largest_product_node == "xcx"
    assert run.largest_value == pytest.approx(abs(expected[0, 2]))
    exact = fixed_point_run(model, x)
    np.testing.assert_allclose(exact.logits, x * x / 3 + [0.1, 0.2, 100.0])
    # the product bound, 2^(63 - 8), is the nearest
    assert run.headroom_bits == pytest.approx(
        np.log2(fmt.product_bound / run.largest_product))
    assert run.fits
    too_large = fixed_point_run(model, x * 2.0**24, fmt)
    assert too_large.headroom_bits < 0 and not too_large.fits


def _efficientnet_like(seed=0):
    """Stride-2 'same' convolution, depthwise convolution, a
    squeeze-excitation gate (sigmoid) and SiLU sites, as EfficientNet."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Activation("silu")(h)
    h = keras.layers.DepthwiseConv2D(3, padding="same")(h)
    h = keras.layers.Activation("silu")(h)
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True)(h)
    gate = keras.layers.Conv2D(8, 1, activation="sigmoid")(gate)
    h = keras.layers.Multiply()([h, gate])
    h = keras.layers.Conv2D(16, 1)(h)
    h = keras.layers.Activation("silu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(5)(h))
    student = ka.replace_relus(model, activations=("silu",))
    rng = np.random.default_rng(seed)
    for site in ka.selectors(student):
        site.mask.assign((rng.random(site.mask.shape) < 0.3).astype(
            "float32"))
    return ka.harden(student)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fixed_point")
    models = {"resnet_small": harden_sites(teacher()),
              "efficientnet_like": _efficientnet_like()}
    for name, model in models.items():
        export_onnx(model, folder / f"{name}.onnx")
    return folder, models


def test_graphs_that_drop_the_batch_axis_run_image_by_image():
    # (1, 3) -> (3,) -> scaled -> (1, 3), as tf2onnx writes some
    # squeeze-excitation blocks: only one image at a time fits.
    model = _graph(
        [helper.make_node("Reshape", ["x", "flat"], ["f"]),
         helper.make_node("Mul", ["f", "w"], ["m"]),
         helper.make_node("Reshape", ["m", "back"], ["y"])],
        {"w": [1.0, 2.0, 3.0]})
    for name, shape in (("flat", [3]), ("back", [1, 3])):
        model.graph.initializer.append(numpy_helper.from_array(
            np.asarray(shape, np.int64), name))
    pixels = np.arange(60, dtype=np.float64).reshape(20, 3)
    run = fixed_point_run(model, pixels)
    np.testing.assert_allclose(run.logits, pixels * [1.0, 2.0, 3.0])


@pytest.mark.parametrize("name", ["resnet_small", "efficientnet_like"])
def test_emulation_follows_keras_on_real_images(exports, name,
                                                cifar10_slice):
    """Exact, the interpreter computes the Keras model's logits; in each
    format it stays within fixed-point error of them, and real and 2x
    brighter CIFAR-10 images stay in the ring."""
    folder, models = exports
    (x, _), _, _ = cifar10_slice
    pixels = x[:40].astype("float32")
    model = models[name]
    path = folder / f"{name}.onnx"
    for scale in (1.0, 2.0):
        expected = model.predict(pixels * scale / 255.0, verbose=0)
        exact = fixed_point_run(path, pixels * scale)
        np.testing.assert_allclose(exact.logits, expected, rtol=1e-4,
                                   atol=1e-4 * np.abs(expected).max())
        for fmt in FORMATS.values():
            run = fixed_point_run(path, pixels * scale, fmt)
            error = np.abs(run.logits - exact.logits).max()
            assert 0 < error < 1e-2 * max(1.0, np.abs(expected).max())
            assert run.headroom_bits > 0


def test_an_exploding_export_does_not_fit(exports, cifar10_slice):
    """Quadratics with ``c2 = 2`` at every site: fine in float64 on real
    images, far beyond both rings at 2x brightness."""
    folder, _ = exports
    selected = ka.replace_relus(teacher())
    for site in ka.selectors(selected):
        site.mask.assign(np.zeros(site.mask.shape, "float32"))
        site.polynomial.assign_coefficients(
            np.array([[0.0], [0.5], [2.0]]) * np.ones(site.coefficients.shape))
    path = folder / "exploding.onnx"
    export_onnx(ka.harden(selected), path)
    (x, _), _, _ = cifar10_slice
    result = fixed_point_check(path, x[:16].astype("float32"))
    assert set(result) == set(FORMATS)
    for entry in result.values():
        assert not entry["fits"]
        bright = entry["scales"]["x2"]
        assert not bright["fits"] and bright["headroom_bits"] < 0
        assert bright["largest_product"] > entry["product_bound"]
        assert bright["largest_product_node"]
