"""One tiny model per op class the PI-ready ONNX graph carries: the ops of
the keras.applications models (MobileNet's zero padding and depthwise
convolutions, DenseNet's concatenation and average pooling, ResNet's
padded 3x3 max-pooling, a residual CNN's 2x2 max-pooling, hard swish and
hard-sigmoid gates, SiLU with sigmoid gates, GELU), hardened with about a
third of each site kept."""

import keras
import numpy as np

import keras_autorep as ka
from pi_models import hardened

SHAPE = (16, 16, 3)
L = keras.layers


def _padded_depthwise(x):
    x = L.Conv2D(8, 3, padding="same")(x)
    x = L.ReLU(6.0)(x)
    x = L.ZeroPadding2D(((0, 1), (0, 1)))(x)
    x = L.DepthwiseConv2D(3, strides=2)(x)
    return L.Conv2D(8, 1)(L.ReLU(6.0)(x))


def _concat_average(x):
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    grown = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = L.Conv2D(8, 1)(L.Concatenate()([x, grown]))
    return L.ReLU()(L.AveragePooling2D(2)(x))


def _max_pool_2(x):
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = L.ReLU()(L.Add()([L.Conv2D(8, 3, padding="same")(x), x]))
    return L.MaxPooling2D(2)(x)


def _max_pool_3(x):
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = L.MaxPooling2D(3, strides=2)(L.ZeroPadding2D(1)(x))
    return L.Conv2D(8, 3, padding="same", activation="relu")(x)


def _gate(x, activation):
    """Squeeze-excitation: the map times a per-channel gate."""
    squeezed = L.GlobalAveragePooling2D(keepdims=True)(x)
    squeezed = L.Conv2D(4, 1, activation="relu")(squeezed)
    gate = L.Conv2D(x.shape[-1], 1, activation=activation)(squeezed)
    return L.Multiply()([x, gate])


def _hard_swish(x):
    x = L.Activation("hard_swish")(L.Conv2D(8, 3, padding="same")(x))
    return L.Conv2D(8, 1)(_gate(x, "hard_sigmoid"))


def _silu(x):
    x = L.Activation("silu")(L.Conv2D(8, 3, padding="same")(x))
    return L.Conv2D(8, 1)(_gate(x, "sigmoid"))


def _gelu(x):
    x = L.Activation("gelu")(L.Conv2D(8, 3, padding="same")(x))
    return L.Activation("gelu")(L.Conv2D(8, 3, padding="same")(x))


# name: (body, the activations that become sites)
OP_CLASSES = {
    "padded_depthwise": (_padded_depthwise, ("relu6",)),
    "concat_average": (_concat_average, ("relu",)),
    "max_pool_2x2": (_max_pool_2, ("relu",)),
    "max_pool_3x3": (_max_pool_3, ("relu",)),
    "hard_swish_gate": (_hard_swish, ("hard_swish", "relu")),
    "silu_gate": (_silu, ("silu",)),
    "gelu": (_gelu, ("gelu",)),
}


def op_class_model(name, seed=0):
    """The hardened model of one op class: about a third of each site kept,
    DaPa-like coefficients; its logits layer scaled so that the top-1
    class wins by more than fixed-point arithmetic errs."""
    body, activations = OP_CLASSES[name]
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(SHAPE)
    x = L.GlobalAveragePooling2D()(body(inputs))
    model = keras.Model(inputs, L.Dense(10)(x))
    dense = model.layers[-1]
    dense.kernel.assign(dense.kernel * 20.0)
    return hardened(ka.replace_relus(model, activations=activations),
                    lambda number, count: 0.3, seed)


def images(count, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((count,) + SHAPE) * 255).astype("float32")
