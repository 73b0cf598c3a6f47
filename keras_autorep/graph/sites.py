"""What a non-linear site is: the one definition, as data.

A *site* is a layer whose output passes activation elements through a
non-linearity that private inference pays for. ``site_of(layer)`` returns a
``Site`` record saying what the layer is, or ``None``:

* ReLU sites (counted against the budget): a plain ``ReLU()`` layer or
  ``Activation("relu")`` (``STANDALONE_RELU``), a layer with a fused
  ``activation="relu"`` (``FUSED_RELU``), and the keras_autorep layers
  that stand where a ReLU was: ``ReLUSelector``, ``SoftReLUMask``,
  ``PartialReLU`` and ``PolynomialActivation`` (a site with no ReLU kept).
* Other comparison-based sites (``COMPARISON``): relu6, leaky ReLU, ELU,
  hard sigmoid/swish, clipped ReLU layers, max-pooling. They cost
  comparisons too but are not ReLUs; counting lists them apart.

Counting, conversion, hardening, the CryptoNAS transforms and the PI spec
all ask ``site_of``; nothing else decides what a site is.
"""

import dataclasses

import keras
from keras import ops

from keras_autorep.layers import (
    PartialReLU,
    PolynomialActivation,
    ReLUSelector,
    SoftReLUMask,
)

STANDALONE_RELU = "ReLU"
FUSED_RELU = "fused relu"
SELECTOR = "ReLUSelector"
SOFT_MASK = "SoftReLUMask"
PARTIAL_RELU = "PartialReLU"
POLYNOMIAL = "PolynomialActivation"
COMPARISON = "comparison"

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
        layer: the Keras layer.
        kind: one of ``RELU_KINDS`` or ``COMPARISON``.
        label: how tables show it (e.g. ``"ReLU"``, ``"Activation(relu)"``,
            ``"MaxPooling2D"``, ``"activation relu6"``).
    """

    layer: keras.layers.Layer
    kind: str
    label: str

    @property
    def is_relu(self):
        """Counted against the ReLU budget (every kind but ``COMPARISON``)."""
        return self.kind != COMPARISON

    @property
    def fused(self):
        """The ReLU is the fused activation of a Conv/Dense/... layer."""
        return self.kind == FUSED_RELU

    @property
    def convertible(self):
        """A plain ReLU that ``replace_relus`` turns into a selector."""
        return self.kind in (STANDALONE_RELU, FUSED_RELU)

    def kept_per_call(self):
        """Kept ReLU elements per example and call, or ``None`` when every
        element is kept (plain ReLU, comparison sites)."""
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


def _is_plain_relu_layer(layer):
    return (
        isinstance(layer, keras.layers.ReLU)
        and layer.max_value is None
        and not layer.negative_slope
        and not layer.threshold
    )


def site_of(layer):
    """The ``Site`` of a layer, or ``None`` if it is not a non-linear site."""
    for layer_class, kind in _LAYER_KINDS:
        if isinstance(layer, layer_class):
            return Site(layer, kind, kind)
    if isinstance(layer, keras.layers.ReLU):
        if _is_plain_relu_layer(layer):
            return Site(layer, STANDALONE_RELU, "ReLU")
        return Site(layer, COMPARISON, "ReLU (clipped/leaky)")
    if isinstance(layer, keras.layers.LeakyReLU):
        return Site(layer, COMPARISON, "LeakyReLU")
    if isinstance(layer, MAX_POOLING):
        return Site(layer, COMPARISON, type(layer).__name__)
    name = activation_name(layer)
    if name == "relu":
        if isinstance(layer, keras.layers.Activation):
            return Site(layer, STANDALONE_RELU, "Activation(relu)")
        return Site(layer, FUSED_RELU, FUSED_RELU)
    if name in COMPARISON_ACTIVATIONS:
        return Site(layer, COMPARISON, f"activation {name}")
    return None


def iter_layers(model):
    """All layers of a model, descending into nested models."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


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
