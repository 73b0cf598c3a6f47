"""What a non-linear site is: the one definition, as data.

A *site* is a layer, or a ``keras.ops`` node of a functional model, whose
output passes activation elements through a non-linearity that private
inference pays for. ``site_of(layer)`` returns a ``Site`` record saying
what it is, or ``None``:

* ReLU sites (counted against the budget): a plain ``ReLU()`` layer,
  ``Activation("relu")`` or a ``keras.ops.relu`` node
  (``STANDALONE_RELU``), a layer with a fused ``activation="relu"``
  (``FUSED_RELU``), and the keras_autorep layers that stand where an
  activation was: ``ReLUSelector``, ``SoftReLUMask``, ``PartialReLU`` and
  ``PolynomialActivation`` (a site with nothing kept), whatever activation
  they select.
* Other sites, not in the budget unless converted: comparison-based ones
  (``COMPARISON``: relu6, leaky ReLU, ELU, hard sigmoid/swish, clipped
  ReLU layers, max-pooling) and smooth ones (``SMOOTH``: silu, gelu,
  sigmoid), as layers, fused activations or ``keras.ops`` nodes.

A site's ``activation`` is its name in ``keras_autorep.layers.activations``
when it applies exactly that function, and ``form`` says how (a layer or
an op node of its own, or fused into a Conv/Dense layer); such sites are
what ``replace_relus(model, activations=...)`` can convert.

Counting, conversion, hardening, the CryptoNAS transforms and the PI spec
all ask ``site_of``; nothing else decides what a site is.
"""

import dataclasses
import re

import keras
from keras import ops

from keras_autorep.adapters.keras_graph import is_nn_operation
from keras_autorep.graph.rewrite import iter_layers
from keras_autorep.layers import (
    PartialReLU,
    PolynomialActivation,
    ReLUSelector,
    SoftReLUMask,
)
from keras_autorep.layers.activations import (
    ACTIVATIONS,
    ALIASES,
    LEAKY_RELU_SLOPE,
    pi_cost,
)

STANDALONE_RELU = "ReLU"
FUSED_RELU = "fused relu"
SELECTOR = "ReLUSelector"
SOFT_MASK = "SoftReLUMask"
PARTIAL_RELU = "PartialReLU"
POLYNOMIAL = "PolynomialActivation"
COMPARISON = "comparison"

# How a convertible site applies its activation.
STANDALONE = "standalone"
FUSED = "fused"
OP_NODE = "op node"

RELU_KINDS = (
    STANDALONE_RELU, FUSED_RELU, SELECTOR, SOFT_MASK, PARTIAL_RELU, POLYNOMIAL,
)
COMPARISON_ACTIVATIONS = (
    "relu6",
    "leaky_relu",
    "elu",
    "selu",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "celu",
    "soft_shrink",
    "hard_shrink",
)
MAX_POOLING = (
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
)
_LAYER_KINDS = (
    (ReLUSelector, SELECTOR),
    (SoftReLUMask, SOFT_MASK),
    (PartialReLU, PARTIAL_RELU),
    (PolynomialActivation, POLYNOMIAL),
)


@dataclasses.dataclass(frozen=True)
class Site:
    """One non-linear site.

    Attributes:
        layer: the Keras layer (or ``keras.ops`` operation node).
        kind: one of ``RELU_KINDS``, ``COMPARISON`` or ``SMOOTH``.
        label: how tables show it (e.g. ``"ReLU"``, ``"Activation(relu)"``,
            ``"MaxPooling2D"``, ``"activation relu6"``, ``"ops.relu"``).
        activation: the registry name of the function it applies
            (``"relu"``, ``"silu"``, ...), or ``None``.
        form: ``STANDALONE``, ``FUSED`` or ``OP_NODE`` for a site that
            ``replace_relus`` can convert, else ``None``.
    """

    layer: object
    kind: str
    label: str
    activation: str = None
    form: str = None

    @property
    def is_relu(self):
        """Counted against the budget: a ReLU, or a keras_autorep layer
        (whatever activation it selects)."""
        return self.kind in RELU_KINDS

    @property
    def fused(self):
        """The activation is fused into a Conv/Dense/... layer."""
        return self.form == FUSED

    @property
    def pi_cost(self):
        """``COMPARISON`` or ``SMOOTH``: how a PI protocol evaluates it."""
        if self.activation is None:
            return COMPARISON
        return pi_cost(self.activation)

    @property
    def convertible(self):
        """A plain ReLU that ``replace_relus`` turns into a selector."""
        return self.convertible_to(("relu",))

    def convertible_to(self, activations):
        """Whether ``replace_relus(..., activations=activations)`` turns
        this site into a selector."""
        return self.form is not None and self.activation in activations

    def kept_per_call(self):
        """Kept elements per example and call, or ``None`` when every
        element is kept (plain activations, comparison sites)."""
        layer = self.layer
        if self.kind == SELECTOR:
            mask = ops.convert_to_numpy(layer.mask)
            return int(mask.sum()) * layer.relus_per_indicator
        if self.kind == SOFT_MASK:
            return int(ops.convert_to_numpy(layer.kept_relus()))
        if self.kind == PARTIAL_RELU:
            return layer.num_kept
        if self.kind == POLYNOMIAL:
            return 0
        return None


def activation_name(layer):
    """Name of a layer's activation function (``Activation`` or fused)."""
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    return getattr(activation, "__name__", None)


def _relu_layer_activation(layer):
    """``(name, exact)`` of a ``ReLU``/``LeakyReLU`` layer: the registry
    activation it is a form of (or ``None``), and whether it computes it
    exactly (not another leaky slope)."""
    slope = float(layer.negative_slope or 0.0)
    threshold = float(getattr(layer, "threshold", 0.0) or 0.0)
    max_value = getattr(layer, "max_value", None)
    if threshold:
        return None, False
    if max_value is None:
        if not slope:
            return "relu", True
        return "leaky_relu", slope == LEAKY_RELU_SLOPE
    return ("relu6", True) if float(max_value) == 6.0 and not slope else (
        None, False)


def _op_activation(operation):
    """``(name, exact)`` of a ``keras.ops.nn`` activation node: its
    snake-case class name and whether it computes the registry function
    with the registry's parameters."""
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(operation).__name__).lower()
    if name == "leaky_relu":
        return name, operation.negative_slope == LEAKY_RELU_SLOPE
    if name == "gelu":
        return name, not operation.approximate
    return name, True


def _activation_site(layer, name, form, label):
    """The site of ``layer`` applying the activation ``name`` in ``form``
    (``None``: listed, not convertible)."""
    canonical = ALIASES.get(name, name)
    if canonical == "relu":
        kind = FUSED_RELU if form == FUSED else STANDALONE_RELU
        return Site(layer, kind, label, "relu", form)
    if canonical in ACTIVATIONS:
        return Site(layer, pi_cost(canonical), label, canonical, form)
    if name in COMPARISON_ACTIVATIONS:
        return Site(layer, COMPARISON, label)
    return None


def site_of(layer):
    """The ``Site`` of a layer or op node, or ``None`` if it is not a
    non-linear site."""
    for layer_class, kind in _LAYER_KINDS:
        if isinstance(layer, layer_class):
            activation = getattr(layer, "activation", "relu")
            label = kind if activation == "relu" else f"{kind}({activation})"
            return Site(layer, kind, label, activation)
    if isinstance(layer, (keras.layers.ReLU, keras.layers.LeakyReLU)):
        activation, exact = _relu_layer_activation(layer)
        if activation == "relu":
            return Site(layer, STANDALONE_RELU, "ReLU", "relu", STANDALONE)
        label = ("LeakyReLU" if isinstance(layer, keras.layers.LeakyReLU)
                 else "ReLU (clipped/leaky)")
        return Site(layer, COMPARISON, label, activation,
                    STANDALONE if exact else None)
    if isinstance(layer, MAX_POOLING):
        return Site(layer, COMPARISON, type(layer).__name__)
    if not isinstance(layer, keras.layers.Layer):
        if not is_nn_operation(layer):
            return None
        name, exact = _op_activation(layer)
        return _activation_site(layer, name, OP_NODE if exact else None,
                                f"ops.{name}")
    name = activation_name(layer)
    if name is None:
        return None
    if isinstance(layer, keras.layers.Activation):
        form = STANDALONE
        label = "Activation(relu)" if name == "relu" else f"activation {name}"
    else:
        form = FUSED
        label = FUSED_RELU if name == "relu" else f"activation {name}"
    return _activation_site(layer, name, form, label)


def sites(model, kinds=None):
    """The sites of a model (nested models included), in graph order.

    Args:
        model: a Keras model.
        kinds: optional collection of kinds to keep (e.g. ``(SELECTOR,)``).
    """
    found = (site_of(layer) for layer in iter_layers(model))
    return [
        site for site in found
        if site is not None and (kinds is None or site.kind in kinds)
    ]


def selectors(model):
    """The ``ReLUSelector`` layers of a model, in graph order."""
    return [site.layer for site in sites(model, (SELECTOR,))]
