"""Folding affine replacements into the linear layer that feeds them:
exact (padding, strides, depthwise, dense, batch norm), and only where the
layer's output goes to the site alone."""

import re

import keras
import numpy as np
import pytest

from keras_autorep import harden, replace_relus
from keras_autorep.graph import fold_linear_sites, foldable_sites, selectors
from keras_autorep.layers import PartialReLU

L = keras.layers


def network():
    """Sites after: a strided, zero-padded conv; a batch norm; a depthwise
    conv; a residual Add (not foldable); a conv whose output is also read
    by the Add's other branch (not foldable); a dense layer."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((9, 9, 3))
    x = L.ReLU(name="after_strided")(
        L.Conv2D(6, 3, strides=2, padding="same")(inputs))
    x = L.ReLU(name="after_bn")(L.BatchNormalization()(
        L.Conv2D(6, 3, padding="same", use_bias=False)(x)))
    x = L.ReLU(name="after_depthwise")(
        L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x))
    shared = L.Conv2D(12, 1)(x)
    x = L.ReLU(name="after_shared")(shared)
    x = L.ReLU(name="after_add")(L.Add()([x, shared]))
    x = L.Flatten()(L.GlobalAveragePooling2D()(x))
    x = L.ReLU(name="after_dense")(L.Dense(5)(x))
    return keras.Model(inputs, L.Dense(3)(x))


FOLDED = {"after_strided", "after_bn", "after_depthwise", "after_dense"}


def test_lines_fold_exactly_where_only_the_site_reads_the_layer():
    teacher = network()
    # Moving batch-norm statistics away from (0, 1), random lines.
    rng = np.random.default_rng(1)
    bn = next(l for l in teacher.layers if isinstance(l, L.BatchNormalization))
    bn.set_weights([rng.uniform(0.5, 2, 6), rng.normal(size=6),
                    rng.normal(size=6), rng.uniform(0.5, 2, 6)])
    student = replace_relus(teacher, replacement="poly1")
    for selector in selectors(student):
        selector.mask.assign(np.zeros(selector.mask.shape, "float32"))
        channels = selector.activation_shape[-1]
        selector.polynomial.assign_coefficients(
            rng.normal(size=(2, channels)).astype("float32"))
    assert set(foldable_sites(student)) == FOLDED
    plain = harden(student, fold=False)
    folded = harden(student)
    assert fold_linear_sites(folded) is folded  # nothing left to fold
    forms = {layer.name: layer.form for layer in folded.layers
             if isinstance(layer, PartialReLU)}
    assert forms == {**{name: "identity" for name in FOLDED},
                     "after_shared": "poly1", "after_add": "poly1"}
    images = rng.uniform(0, 1, (16, 9, 9, 3)).astype("float32")
    expected = plain.predict(images, verbose=0)
    np.testing.assert_allclose(folded.predict(images, verbose=0), expected,
                               rtol=1e-5, atol=1e-5)
    assert np.abs(expected).max() > 1e-2  # not a trivially zero network
    # A site that keeps a ReLU is never folded.
    first = selectors(student)[0]
    first.mask.assign(np.ones(first.mask.shape, "float32"))
    site = harden(student).get_layer("after_strided")
    assert (site.form, site.num_kept) == ("poly1", 5 * 5 * 6)


def test_a_model_without_foldable_sites_is_returned_as_is():
    student = replace_relus(network())
    hardened = harden(student)
    assert fold_linear_sites(hardened) is hardened
    assert all(layer.form == "poly2" for layer in hardened.layers
               if isinstance(layer, PartialReLU))


def test_only_sites_that_gather_or_square_put_the_model_through_xla():
    """XLA fuses a site's gathers, scatters and squares, but its CPU
    convolutions are slower than TensorFlow's: a hardened model whose
    every site is one elementwise pass keeps the plain model's setting."""
    teacher = network()
    student = replace_relus(teacher, replacement="poly1")
    for selector in selectors(student):
        selector.mask.assign(np.zeros(selector.mask.shape, "float32"))
    passes = harden(student)
    assert all(layer.elementwise for layer in passes.layers
               if isinstance(layer, PartialReLU))
    assert passes.jit_compile == teacher.jit_compile
    half = replace_relus(teacher)  # poly2, half of each site kept
    for selector in selectors(half):
        mask = np.zeros(selector.mask.shape, "float32")
        mask.flat[::2] = 1.0
        selector.mask.assign(mask)
    fused = harden(half)
    assert not any(layer.elementwise for layer in fused.layers
                   if isinstance(layer, PartialReLU))
    assert fused.jit_compile is True


def test_sites_can_compile_alone(tmp_path):
    """``xla="sites"``: the model keeps its setting and each site that
    needs fusing compiles alone (on TensorFlow its ops, and only those,
    are marked for XLA); same function, kept across a ``.keras`` file."""
    teacher = network()
    half = replace_relus(teacher)
    for selector in selectors(half):
        mask = np.zeros(selector.mask.shape, "float32")
        mask.flat[::2] = 1.0
        selector.mask.assign(mask)
    whole, alone = harden(half), harden(half, xla="sites")
    assert alone.jit_compile == teacher.jit_compile
    sites = [layer for layer in alone.layers
             if isinstance(layer, PartialReLU)]
    assert sites and all(layer.xla for layer in sites)
    x = np.random.default_rng(0).random((4, 9, 9, 3), dtype=np.float32)
    expected = whole.predict_on_batch(x)
    np.testing.assert_allclose(alone.predict_on_batch(x), expected,
                               rtol=1e-5, atol=1e-5)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        graph = tf.function(lambda t: alone(t, training=False)) \
            .get_concrete_function(tf.TensorSpec((1, 9, 9, 3))).graph
        # Ops are named <model>_1/<layer>_1/... in a traced call.
        marked = {re.sub(r"_1$", "", op.name.split("/")[1])
                  for op in graph.get_operations()
                  if "_XlaCompile" in op.node_def.attr}
        assert marked == {layer.name for layer in sites}
    alone.save(tmp_path / "alone.keras")
    reloaded = keras.saving.load_model(tmp_path / "alone.keras")
    assert all(layer.xla for layer in reloaded.layers
               if isinstance(layer, PartialReLU))
    np.testing.assert_allclose(reloaded.predict_on_batch(x), expected,
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="xla must be one of"):
        harden(half, xla="everything")
