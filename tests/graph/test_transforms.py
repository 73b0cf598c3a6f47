"""keras_autorep.graph.transforms: CryptoNAS ReLU pruning and shuffling."""

import keras
import numpy as np
from keras import layers

from keras_autorep.graph import (
    count_relus,
    prunable_relus,
    prune_relus,
    shufflable_relus,
    shuffle_relus,
)


def outputs(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


# ------------------------------------------------------------------ pruning


def pruning_model():
    """relu -> maxpool -> relu, a 1x1-conv skip path with a ReLU, a ReLU
    after the merge of two ReLU outputs, and a fused ReLU before a global
    max-pool."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = layers.ReLU(name="relu1")(x)
    x = layers.MaxPooling2D(name="pool")(x)
    x = layers.ReLU(name="relu2")(x)                      # input >= 0
    skip = layers.Conv2D(4, 1, name="skip_conv")(x)
    skip = layers.BatchNormalization(name="skip_bn")(skip)
    skip = layers.ReLU(name="skip_relu")(skip)            # skip path
    main = layers.Conv2D(4, 3, padding="same", activation="relu",
                         name="main_conv")(x)
    x = layers.Add(name="add")([main, skip])
    x = layers.ReLU(name="relu3")(x)                      # relu + relu >= 0
    x = layers.Conv2D(4, 3, padding="same", activation="relu",
                      name="head_conv")(x)
    x = layers.GlobalMaxPooling2D(name="global_pool")(x)
    return keras.Model(inputs, layers.Dense(3, name="logits")(x))


def test_prune_removes_relus_of_nonnegative_inputs_exactly():
    model = pruning_model()
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32")
    assert prunable_relus(model) == {"relu2": "non-negative input",
                                     "relu3": "non-negative input"}
    pruned = prune_relus(model)
    before, after = count_relus(model).total, count_relus(pruned).total
    assert before - after == 4 * 4 * 4 * 2  # relu2 and relu3, 4x4x4 each
    np.testing.assert_array_equal(outputs(model, x), outputs(pruned, x))
    assert isinstance(pruned.get_layer("relu2"), layers.Identity)


def test_prune_skip_paths_removes_the_relu_after_a_1x1_conv():
    model = pruning_model()
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32")
    # Without skip_relu the merge can be negative, so relu3 stays.
    assert prunable_relus(model, skip_paths=True) == {
        "relu2": "non-negative input",
        "skip_relu": "skip path after 1x1 conv",
    }
    pruned = prune_relus(model, skip_paths=True)
    assert count_relus(model).total - count_relus(pruned).total == 2 * 64
    assert not np.allclose(outputs(model, x), outputs(pruned, x))


def test_prune_skip_paths_handles_fused_relus():
    inputs = keras.Input((8, 8, 3))
    skip = layers.Conv2D(4, 1, activation="relu", name="skip_conv")(inputs)
    main = layers.Conv2D(4, 3, padding="same", name="main_conv")(inputs)
    x = layers.Add()([main, skip])
    model = keras.Model(inputs, layers.Dense(2)(layers.Flatten()(x)))
    pruned = prune_relus(model, skip_paths=True)
    assert count_relus(pruned).total == 0
    assert pruned.get_layer("skip_conv").get_config()["activation"] \
        == "linear"
    np.testing.assert_array_equal(pruned.get_layer("skip_conv").get_weights()[0],
                                  model.get_layer("skip_conv").get_weights()[0])


# ------------------------------------------------------------------ shuffling


def test_shuffle_moves_relus_past_max_pooling_exactly():
    model = pruning_model()
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 3)).astype("float32")
    assert shufflable_relus(model) == {"relu1": "pool",
                                       "head_conv": "global_pool"}
    shuffled = shuffle_relus(model)
    # relu1: 8x8x4 -> 4x4x4; head_conv's fused ReLU: 4x4x4 -> 4
    assert count_relus(model).total - count_relus(shuffled).total \
        == (256 - 64) + (64 - 4)
    np.testing.assert_allclose(outputs(model, x), outputs(shuffled, x),
                               rtol=1e-6, atol=1e-6)
    order = [layer.name for layer in shuffled.layers]
    assert order.index("pool") < order.index("relu1")
    # relu2 now follows relu1 directly: pruning catches it.
    both = prune_relus(shuffled)
    assert count_relus(both).total < count_relus(shuffled).total
    np.testing.assert_allclose(outputs(model, x), outputs(both, x),
                               rtol=1e-6, atol=1e-6)


def test_shuffle_sequential_and_average_pooling():
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        layers.Conv2D(2, 3, padding="same", activation="relu", name="conv"),
        layers.AveragePooling2D(2, name="avg"),
        layers.Flatten(),
        layers.Dense(2),
    ])
    x = np.random.default_rng(2).normal(size=(4, 8, 8, 3)).astype("float32")
    assert shufflable_relus(model) == {}  # average pooling does not commute
    moved = shuffle_relus(model, exact=False)
    assert isinstance(moved, keras.Sequential)
    assert count_relus(moved).total == count_relus(model).total // 4
    assert not np.allclose(outputs(model, x), outputs(moved, x))


def test_shuffle_keeps_relus_with_other_consumers():
    inputs = keras.Input((8, 8, 3))
    x = layers.ReLU(name="relu")(layers.Conv2D(2, 3, padding="same")(inputs))
    pooled = layers.MaxPooling2D()(x)
    model = keras.Model(inputs, [pooled, x])  # the ReLU is also an output
    assert shufflable_relus(model) == {}
    # A pool shared with another branch must keep pooling there.
    pool = layers.MaxPooling2D(name="shared_pool")
    relu = layers.ReLU(name="relu")(layers.Conv2D(2, 3, padding="same")(inputs))
    other = layers.Conv2D(2, 3, padding="same")(inputs)
    merged = layers.Add()([pool(relu), pool(other)])
    model = keras.Model(inputs, merged)
    assert shufflable_relus(model) == {}
    assert count_relus(shuffle_relus(model)).total == 8 * 8 * 2
