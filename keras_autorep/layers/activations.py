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

import keras

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
        pi_cost: ``COMPARISON`` or ``SMOOTH``.
    """

    name: str
    function: object
    pi_cost: str


_REGISTRY = {
    activation.name: activation
    for activation in (
        Activation("relu", keras.activations.relu, COMPARISON),
        Activation("relu6", keras.activations.relu6, COMPARISON),
        # keras.activations.leaky_relu: negative slope 0.2.
        Activation("leaky_relu", keras.activations.leaky_relu, COMPARISON),
        Activation("hard_sigmoid", keras.activations.hard_sigmoid, COMPARISON),
        Activation("hard_swish", keras.activations.hard_silu, COMPARISON),
        Activation("silu", keras.activations.silu, SMOOTH),
        Activation("gelu", keras.activations.gelu, SMOOTH),
        Activation("sigmoid", keras.activations.sigmoid, SMOOTH),
    )
}
ALIASES = {"hard_silu": "hard_swish", "swish": "silu"}
ACTIVATIONS = tuple(_REGISTRY)
LEAKY_RELU_SLOPE = 0.2


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
