"""The activations a site can select, by name: function and PI cost class.

``replace_relus(model, activations=(...))`` makes every activation named
here a selectable site; ``ReLUSelector``, ``PolynomialActivation`` and
``PartialReLU`` store the name in their config (``activation="relu"`` by
default) and apply ``activation_function(name)`` at kept positions. Each
activation has a PI cost class:

* ``COMPARISON``: evaluated with comparisons, like ReLU (relu, relu6,
  leaky ReLU, hard sigmoid, hard swish; max-pooling is one too);
* ``SMOOTH``: a smooth function that a PI protocol evaluates by a
  piecewise (spline or polynomial) approximation, i.e. several comparisons
  and products per element (silu, gelu, sigmoid).
"""

import dataclasses
import math

import keras
from keras import ops

COMPARISON = "comparison"
SMOOTH = "smooth"
PI_COST_CLASSES = (COMPARISON, SMOOTH)


@dataclasses.dataclass(frozen=True)
class Activation:
    """One selectable activation.

    Attributes:
        name: canonical name (``"relu"``, ``"silu"``, ...).
        function: the Keras activation (same values as
            ``keras.activations.get(name)``).
        derivative: its derivative, element-wise (``keras.ops``; at a kink
            the one-sided value automatic differentiation gives).
        pi_cost: ``COMPARISON`` or ``SMOOTH``.
        negative_slope: for a piecewise-linear ``f(x) = x * f'(x)`` with
            slope 1 above 0, its slope below (ReLU 0, leaky ReLU 0.2),
            which lets a gradient use ``x > 0`` alone; ``None`` otherwise.
    """

    name: str
    function: object
    derivative: object
    pi_cost: str
    negative_slope: float = None


def _between(x, low, high):
    """1 where ``low < x < high``, else 0 (``x``'s dtype)."""
    return ops.cast(ops.logical_and(ops.greater(x, low), ops.less(x, high)),
                    x.dtype)


def _relu_slope(x):
    return ops.cast(ops.greater(x, 0.0), x.dtype)


def _leaky_relu_slope(x):
    return ops.where(ops.greater(x, 0.0), 1.0, LEAKY_RELU_SLOPE)


def _hard_swish_slope(x):
    return ops.relu6(x + 3.0) / 6.0 + x * _between(x, -3.0, 3.0) / 6.0


def _silu_slope(x):
    s = ops.sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


def _gelu_slope(x):
    cdf = 0.5 * (1.0 + ops.erf(x / math.sqrt(2.0)))
    return cdf + x * ops.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _sigmoid_slope(x):
    s = ops.sigmoid(x)
    return s * (1.0 - s)


LEAKY_RELU_SLOPE = 0.2  # keras.activations.leaky_relu's default


_REGISTRY = {
    activation.name: activation
    for activation in (
        Activation("relu", keras.activations.relu, _relu_slope, COMPARISON,
                   negative_slope=0.0),
        Activation("relu6", keras.activations.relu6,
                   lambda x: _between(x, 0.0, 6.0), COMPARISON),
        Activation("leaky_relu", keras.activations.leaky_relu,
                   _leaky_relu_slope, COMPARISON,
                   negative_slope=LEAKY_RELU_SLOPE),
        Activation("hard_sigmoid", keras.activations.hard_sigmoid,
                   lambda x: _between(x, -3.0, 3.0) / 6.0, COMPARISON),
        Activation("hard_swish", keras.activations.hard_silu,
                   _hard_swish_slope, COMPARISON),
        Activation("silu", keras.activations.silu, _silu_slope, SMOOTH),
        Activation("gelu", keras.activations.gelu, _gelu_slope, SMOOTH),
        Activation("sigmoid", keras.activations.sigmoid, _sigmoid_slope,
                   SMOOTH),
    )
}
ALIASES = {"hard_silu": "hard_swish", "swish": "silu"}
ACTIVATIONS = tuple(_REGISTRY)


def canonical_name(name):
    """The registry name of an activation name or alias (``"swish"`` ->
    ``"silu"``); ``ValueError`` for one that is not selectable."""
    canonical = ALIASES.get(name, name)
    if canonical not in _REGISTRY:
        raise ValueError(
            f"activation must be one of {ACTIVATIONS} (or an alias in "
            f"{sorted(ALIASES)}), got {name!r}"
        )
    return canonical


def get(name):
    """The ``Activation`` record of a name or alias."""
    return _REGISTRY[canonical_name(name)]


def activation_function(name):
    """The Keras function of a selectable activation (``keras.ops`` only)."""
    return get(name).function


def pi_cost(name):
    """The PI cost class of a selectable activation."""
    return get(name).pi_cost
