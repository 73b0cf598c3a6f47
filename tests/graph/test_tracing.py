"""The traced graph as ground truth: ReLUs no table row accounts for are
found, attributed and counted; max-pooling comparisons get their column."""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_autorep import count_relus, harden, replace_relus
from keras_autorep.graph import LiveReLUCount
from keras_autorep.graph.tracing import MAX, RELU, trace_comparisons

pytestmark = pytest.mark.backend_agnostic


@keras.saving.register_keras_serializable(package="keras_autorep_tests")
class HiddenReLUBlock(keras.layers.Layer):
    """A custom layer that computes a ReLU no table row knows about."""

    def call(self, inputs):
        return ops.relu(inputs) * 2.0


def custom_layer_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = HiddenReLUBlock(name="hidden")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x), name="custom")


def ops_relu_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = ops.relu(x - 1.0)  # a keras.ops node of the functional graph
    x = keras.layers.Lambda(lambda t: ops.maximum(t, 0.0), name="lam")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x), name="opsrelu")


def test_a_custom_layers_relus_are_found_and_counted():
    count = count_relus(custom_layer_model())
    traced = [row for row in count.rows if row.layer == "hidden"]
    assert len(traced) == 1 and traced[0].kept == 256
    assert "traced" in traced[0].kind
    assert count.total == count.kept == 512  # 256 hidden + 256 ReLU layer
    assert "hidden" in count.table()


def test_ops_relu_and_lambda_relus_are_found():
    model = ops_relu_model()
    count = count_relus(model)
    assert count.kept == 512
    layers = {row.layer for row in count.rows}
    assert "lam" in layers
    outside = [row for row in count.rows if row.layer not in ("lam",)]
    assert outside and outside[0].kept == 256
    kinds = {op.kind for op in trace_comparisons(model)}
    assert kinds == {RELU}


def test_constant_comparisons_cost_nothing():
    model = keras.Sequential([
        keras.Input((4, 4, 3)),
        keras.layers.Normalization(mean=[0.1, 0.2, 0.3],
                                   variance=[1.0, 2.0, 3.0]),
        keras.layers.Conv2D(2, 3, activation="relu"),
    ])
    count = count_relus(model)
    assert count.kept == count.total == 8
    assert [op.kind for op in trace_comparisons(model)] == [RELU]


def test_max_pooling_comparisons_have_their_own_column():
    model = keras.Sequential([
        keras.Input((8, 8, 2)),
        keras.layers.ReLU(name="relu"),
        keras.layers.MaxPooling2D(name="pool"),       # 4x4x2 out, 2x2 window
        keras.layers.GlobalMaxPooling2D(name="gmp"),  # 2 out of 16 each
    ])
    count = count_relus(model)
    assert count.total == count.kept == 128
    assert count.max_comparisons == 32 * 3 + 2 * 15
    pool = {row.layer: row.comparisons for row in count.other}
    assert pool == {"pool": 96, "gmp": 30}
    assert all(op.kind == MAX for op in trace_comparisons(model)
               if op.layer in pool)
    assert "max comparisons" in count.table()


def test_traced_relus_are_fixed_relus_for_budgets_and_hardening():
    model = custom_layer_model()
    student = replace_relus(model)
    live = LiveReLUCount(student)
    assert live.fixed == 256  # the custom layer's ReLUs stay
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hardened = harden(student, budget=300)
    assert any("hidden" in str(w.message) for w in caught)
    assert count_relus(hardened).kept <= 300
    with pytest.warns(UserWarning), pytest.raises(ValueError,
                                                    match="hidden"):
        harden(student, budget=100)


def test_tracing_matches_every_site_of_a_hardened_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((6, 6, 3)),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(4, 3, padding="same"),
        keras.layers.ReLU(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2),
    ])
    student = replace_relus(model)
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 3)).astype("float32")
    student(x, training=True)
    hardened = harden(student, budget=100)
    count = count_relus(hardened)
    traced = sum(op.comparisons for op in trace_comparisons(hardened)
                 if op.kind == RELU)
    assert traced == count.kept <= 100


def test_replace_relus_can_swap_max_for_average_pooling():
    model = keras.Sequential([
        keras.Input((8, 8, 2)),
        keras.layers.Conv2D(2, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(name="pool"),
        keras.layers.GlobalMaxPooling2D(name="gmp"),
    ])
    assert count_relus(model).max_comparisons > 0
    kept = replace_relus(model)
    assert count_relus(kept).max_comparisons == count_relus(
        model).max_comparisons
    averaged = replace_relus(model, maxpool="average")
    count = count_relus(averaged)
    assert count.max_comparisons == 0 and count.other == ()
    assert [type(layer).__name__ for layer in averaged.layers[-2:]] == [
        "AveragePooling2D", "GlobalAveragePooling2D"]
    assert averaged.layers[-2].name == "pool"
    with pytest.raises(ValueError, match="maxpool"):
        replace_relus(model, maxpool="min")
