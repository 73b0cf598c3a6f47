"""A site's workload per form, as priced, is what its exported ONNX graph
computes (``onnx_workload``), at every kept count."""

import keras
import numpy as np
import pytest

from keras_autorep.costs import site_workload
from keras_autorep.export import export_onnx
from keras_autorep.layers import PartialReLU
from keras_autorep.pi import onnx_workload

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the ONNX export needs the TensorFlow backend")
SHAPE = (4, 4, 8)
TOTAL = int(np.prod(SHAPE))


def site_model(kept, form, activation="relu"):
    """image -> two convs added -> the site -> conv added to it -> the
    site again -> pool -> dense: a site called twice, each time on a sum,
    which no linear layer can absorb."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    site = PartialReLU(
        len(kept), form=form, kept_indices=kept,
        coefficients=rng.normal(size=(3 if form == "poly2" else 2, 8)),
        activation=activation, name="site")
    conv = keras.layers.Conv2D
    inputs = keras.Input((4, 4, 3))
    first = site(keras.layers.Add()([conv(8, 3, padding="same")(inputs),
                                     conv(8, 1)(inputs)]))
    second = site(keras.layers.Add()([conv(8, 1)(first), first]))
    outputs = keras.layers.Dense(3)(
        keras.layers.GlobalAveragePooling2D()(second))
    return keras.Model(inputs, outputs)


def workload(tmp_path, kept, form, activation="relu"):
    path = tmp_path / f"{form}_{activation}_{len(kept)}.onnx"
    export_onnx(site_model(kept, form, activation), path, batch_size=1)
    return onnx_workload(path)


@pytest.mark.parametrize("form, activation", [
    ("poly2", "relu"), ("poly1", "relu"), ("identity", "relu"),
    ("poly2", "relu6"), ("poly1", "hard_sigmoid"), ("poly2", "hard_swish"),
    ("identity", "sigmoid"), ("poly2", "silu"), ("poly1", "gelu"),
    ("poly2", "leaky_relu"),
])
def test_site_workload_is_the_exported_graphs(tmp_path, form, activation):
    # The same model with a site that computes nothing: what is not the
    # site's.
    rest = workload(tmp_path, np.zeros(0, int), "identity")
    for kept in (np.zeros(0, int), np.arange(0, TOTAL, 3),
                 np.arange(TOTAL)):
        site = workload(tmp_path, kept, form, activation) - rest
        assert site == site_workload(
            2 * TOTAL, 2 * len(kept), form, channels=8, calls=2,
            activation=activation), (form, activation, len(kept))
