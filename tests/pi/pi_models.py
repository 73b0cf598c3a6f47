"""Small CIFAR-shaped models for the PI tests: a resnet_small (width 4)
hardened with one site of each kind (some positions kept, none kept, all
kept), its all-ReLU teacher, and their PI-ready exports."""

import keras
import numpy as np

import keras_autorep as ka
from keras_autorep.architectures import resnet_small

SHAPE = (32, 32, 3)


def teacher(seed=0):
    """Untrained; the logits layer is scaled so that the top-1 class wins
    by far more than fixed-point arithmetic errs."""
    keras.utils.set_random_seed(seed)
    model = resnet_small(
        SHAPE, width=4,
        preprocessing=keras.layers.Normalization(
            mean=[125.0 / 255] * 3, variance=[0.06] * 3),
    )
    dense = model.layers[-1]
    dense.kernel.assign(dense.kernel * 20.0)
    return model


def hardened(selected, keep, seed=0):
    """``selected``'s selectors keeping about ``keep(number, count)`` of
    their positions, DaPa-like coefficients; hardened."""
    rng = np.random.default_rng(seed)
    selectors = ka.selectors(selected)
    for number, selector in enumerate(selectors):
        mask = rng.random(selector.mask.shape) < keep(number, len(selectors))
        selector.mask.assign(mask.astype("float32"))
        coefficients = np.zeros(selector.coefficients.shape)
        coefficients[:] = np.array([[0.0], [0.5], [0.05]])[
            : coefficients.shape[0]]
        selector.polynomial.assign_coefficients(coefficients)
    return ka.harden(selected)


def harden_sites(model, seed=0):
    """Selectors keeping about a third of the positions, except the first
    site (none kept: all polynomial) and the last (all kept)."""
    return hardened(ka.replace_relus(model), lambda number, count: {
        0: 0.0, count - 1: 1.0}.get(number, 0.3), seed)


def pixels(count, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((count,) + SHAPE) * 255).astype("float32")
