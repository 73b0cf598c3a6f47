"""Tiny models and synthetic data shared by the SNL, SENet and allocation
tests (8x8 images, a few hundred examples)."""

import keras
import numpy as np

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def tiny_data(n=256, classes=3, seed=0):
    """Images whose class brightens one channel: ``(x, y)`` arrays."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = (0.5 * rng.random((n, 8, 8, 3))).astype("float32")
    x[np.arange(n), :, :, y % 3] += 0.5
    return x, y


def tiny_cnn(classes=3):
    """Two ReLU sites of 8x8x4: a fused ``activation="relu"`` and a
    ``ReLU`` layer."""
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                                name="conv1"),
            keras.layers.Conv2D(4, 3, padding="same", name="conv2"),
            keras.layers.ReLU(name="relu2"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes, name="logits"),
        ],
        name="tiny_cnn",
    )


def trained_teacher(data, epochs=8):
    """``tiny_cnn`` trained briefly on ``data``."""
    keras.utils.set_random_seed(0)
    teacher = tiny_cnn()
    teacher.compile(keras.optimizers.Adam(2e-2), LOSS, metrics=["accuracy"])
    teacher.fit(*data, batch_size=32, epochs=epochs, verbose=0)
    return teacher


def all_trainable(model):
    """Every layer (and the model) trainable."""
    return model.trainable and all(layer.trainable for layer in model.layers)


def spot_data(n=512, seed=0):
    """A task only well-placed ReLUs solve: 8x8x3 noise, and at a random
    pixel of the left half +4 (class 1) or -4 (class 0), the left half's
    mean kept as it was. The classes mirror each other, so no linear or
    quadratic feature of the image (what removed ReLUs compute) tells them
    apart; a ReLU at the spot's pixel does."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, 8, 8, 3)).astype("float32")
    spot = np.where(y == 1, 4.0, -4.0)[:, None]
    x[:, :, :4] -= (spot / 32)[:, None, None]
    x[np.arange(n), rng.integers(0, 8, n), rng.integers(0, 4, n)] += spot
    return x, y


def spot_cnn():
    """One site of 8x8x4 ReLUs after a 1x1 convolution (so each pixel's
    ReLUs see that pixel only), pooled into 2 logits."""
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 1, name="conv"),
            keras.layers.ReLU(name="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, name="logits"),
        ],
        name="spot_cnn",
    )
