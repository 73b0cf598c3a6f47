"""Small models with every kind of ReLU site, shared by the graph tests."""

import keras
import numpy as np


def sequential_cnn():
    """Fused, ``Activation("relu")``, ``ReLU()`` and fused-Dense ReLU sites
    and a max-pool."""
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(6, 3, padding="same", activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Conv2D(6, 3, padding="same"),
            keras.layers.Activation("relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(4, 3, padding="same"),
            keras.layers.ReLU(),
            keras.layers.Flatten(),
            keras.layers.Dense(12, activation="relu"),
            keras.layers.Dense(5),
        ]
    )


def residual_model():
    inputs = keras.Input((8, 8, 4))
    h = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU(name="block_relu1")(h)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(h)
    h = keras.layers.Add()([h, inputs])
    h = keras.layers.ReLU(name="block_relu2")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(3)(h))


def random_inputs(model, n=4, seed=0):
    shape = (n,) + tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


class HiddenMaximum(keras.layers.Layer):
    """A custom layer whose ``max(x, 0)`` only the traced graph shows."""

    def call(self, inputs):
        return keras.ops.maximum(inputs, 0.0) - 0.5


def mixed_model():
    """A traced row (``hidden``), ReLU, relu6 and fused silu sites, and
    other sites: max-pooling, a fused leaky ReLU, a gelu."""
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="silu",
                            name="conv_silu")(inputs)
    h = HiddenMaximum(name="hidden")(h)
    h = keras.layers.ReLU(6.0, name="relu6")(h)
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="leaky_relu",
                            name="conv_leaky")(h)
    h = keras.layers.ReLU(name="relu")(h)
    h = keras.layers.Activation("gelu", name="gelu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(h),
                       name="mixed")


def normalized_cnn():
    """A CNN whose first layer is an adapted ``Normalization`` (mean 3,
    variance 4): its call reads a state Keras derives from the variables,
    as in every ``keras.applications`` EfficientNet."""
    normalization = keras.layers.Normalization()
    normalization.adapt(
        np.random.default_rng(0).normal(3.0, 2.0, (256, 3)).astype("float32"))
    return keras.Sequential([
        keras.Input((8, 8, 3)),
        normalization,
        keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])
