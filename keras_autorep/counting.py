"""Counting ReLUs: the cost measure of private inference.

Convention (DESIGN.md section 4): one ReLU is one element of one activation
map passed through ReLU, per input example. Counted are ``ReLU`` layers,
``Activation("relu")``, fused ``activation="relu"`` on any layer (Conv, Dense,
...), ``ReLUSelector`` (kept = mask sum), ``PartialReLU`` (kept = its kept
positions) and ``PolynomialActivation`` (a ReLU site with nothing kept).

Layers whose name ends with ``UNCOUNTED_SUFFIX`` are ReLUs that a published
counting convention leaves out (e.g. the stem ReLU of the SNL/AutoReP
ResNet-18, which makes its count 491,520 instead of 557,056). They are still
real ReLUs: they are listed with ``counted=False`` and summed in
``ReLUCount.uncounted``, never silently dropped.

Other comparison-based non-linearities (relu6, leaky ReLU, ELU, hard
sigmoid/swish, max-pooling, ...) also cost comparisons in private inference
but are not ReLUs: they are listed in ``ReLUCount.other`` with their output
element count and left out of the totals.
"""

import dataclasses

import keras
import numpy as np

from keras_autorep.layers import PartialReLU, PolynomialActivation, ReLUSelector

UNCOUNTED_SUFFIX = "_uncounted"

_COMPARISON_ACTIVATIONS = (
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
_MAX_POOLING = (
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
)


@dataclasses.dataclass(frozen=True)
class SiteCount:
    """One row of the ReLU table."""

    layer: str
    kind: str
    shape: tuple
    total: int
    kept: int
    counted: bool = True


@dataclasses.dataclass(frozen=True)
class ReLUCount:
    """Result of ``count_relus``.

    Attributes:
        total: ReLU elements per example the model would have with every
            counted site a ReLU (the ``N`` of the budget loss).
        kept: ReLU elements per example actually computed at counted sites.
        rows: one ``SiteCount`` per counted or uncounted ReLU site.
        other: ``SiteCount`` rows of other comparison-based layers.
        convention: which counting convention the model follows.
    """

    total: int
    kept: int
    rows: tuple
    other: tuple
    convention: str

    @property
    def polynomial(self):
        """Counted elements that go through a polynomial instead of ReLU."""
        return self.total - self.kept

    @property
    def uncounted(self):
        """ReLU elements outside the convention's count (always kept)."""
        return sum(row.kept for row in self.rows if not row.counted)

    def table(self):
        """The per-layer table as text."""
        lines = [
            f"{'layer':<34} {'kind':<22} {'shape':<16} {'total':>10} "
            f"{'kept':>10}"
        ]
        for row in self.rows + self.other:
            kind = row.kind if row.counted else f"{row.kind} (uncounted)"
            lines.append(
                f"{row.layer:<34} {kind:<22} {str(row.shape):<16} "
                f"{row.total:>10,} {row.kept:>10,}"
            )
        lines.append(
            f"{'TOTAL (counted)':<74} {self.total:>10,} {self.kept:>10,}"
        )
        lines.append(f"convention: {self.convention}")
        if self.uncounted:
            lines.append(
                f"uncounted ReLUs (computed, outside the count): "
                f"{self.uncounted:,}"
            )
        if self.other:
            lines.append(
                "other comparison-based layers are listed but not counted "
                "as ReLUs"
            )
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def to_dict(self):
        """JSON-friendly form (for reports)."""
        return {
            "total": self.total,
            "kept": self.kept,
            "polynomial": self.polynomial,
            "uncounted": self.uncounted,
            "convention": self.convention,
            "layers": [dataclasses.asdict(r) for r in self.rows],
            "other": [dataclasses.asdict(r) for r in self.other],
        }


def activation_name(layer):
    """Name of a layer's activation function (``Activation`` or fused)."""
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    return getattr(activation, "__name__", None)


def is_plain_relu_layer(layer):
    """True for ``ReLU()`` layers with default arguments."""
    return (
        isinstance(layer, keras.layers.ReLU)
        and layer.max_value is None
        and not layer.negative_slope
        and not layer.threshold
    )


def iter_layers(model):
    """All layers of a model, descending into nested models."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


def _output_shapes(layer):
    """Per-call output shapes (without batch) of a layer in a graph."""
    nodes = getattr(layer, "_inbound_nodes", [])
    shapes = []
    for node in nodes:
        outputs = keras.tree.flatten(node.output_tensors)
        if outputs:
            shapes.append(tuple(outputs[0].shape[1:]))
    return shapes


def _site(layer, kind, shapes, kept_per_call=None):
    if any(None in shape for shape in shapes):
        raise ValueError(
            f"layer {layer.name!r} has an activation shape with unknown "
            f"dimensions {shapes[0]}; build the model on a fixed input size"
        )
    total_per_call = int(np.prod(shapes[0]))
    kept = total_per_call if kept_per_call is None else kept_per_call
    counted = not layer.name.endswith(UNCOUNTED_SUFFIX)
    return SiteCount(
        layer.name,
        kind,
        shapes[0],
        total_per_call * len(shapes),
        int(kept) * len(shapes),
        counted,
    )


def _classify(layer):
    """(kind, kept_per_call or None, is_relu_site) for one layer, or None."""
    if isinstance(layer, ReLUSelector):
        mask = keras.ops.convert_to_numpy(layer.mask)
        return "ReLUSelector", mask.sum() * layer.relus_per_indicator, True
    if isinstance(layer, PolynomialActivation):
        return "PolynomialActivation", 0, True
    if isinstance(layer, PartialReLU):
        return "PartialReLU", layer.num_kept, True
    if isinstance(layer, keras.layers.ReLU):
        if is_plain_relu_layer(layer):
            return "ReLU", None, True
        return "ReLU (clipped/leaky)", None, False
    if isinstance(layer, keras.layers.LeakyReLU):
        return "LeakyReLU", None, False
    if isinstance(layer, _MAX_POOLING):
        return type(layer).__name__, None, False
    name = activation_name(layer)
    if name == "relu":
        fused = not isinstance(layer, keras.layers.Activation)
        return ("fused relu" if fused else "Activation(relu)"), None, True
    if name in _COMPARISON_ACTIVATIONS:
        return f"activation {name}", None, False
    return None


def count_relus(model):
    """Count the ReLUs of a built Keras model, per layer.

    Args:
        model: a built functional or Sequential model (nested models are
            descended into).

    Returns:
        A ``ReLUCount``: ``.total``, ``.kept``, ``.rows`` (layer, kind,
        activation shape, total, kept, counted), ``.other`` and
        ``.convention``; ``print(count)`` shows the table.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"count_relus expects a keras.Model, got {model!r}")
    if not model.built:
        raise ValueError(
            "count_relus needs a built model: give it an Input or call "
            "model.build(input_shape) first"
        )
    rows, other = [], []
    for layer in iter_layers(model):
        classified = _classify(layer)
        if classified is None:
            continue
        shapes = _output_shapes(layer)
        if not shapes:
            raise ValueError(
                f"layer {layer.name!r} was never called on symbolic inputs; "
                "count_relus needs a functional or Sequential model with an "
                "Input"
            )
        kind, kept, is_relu_site = classified
        (rows if is_relu_site else other).append(
            _site(layer, kind, shapes, kept)
        )
    counted = [row for row in rows if row.counted]
    if len(counted) < len(rows):
        convention = (
            "layers named '*" + UNCOUNTED_SUFFIX + "' are left out of the "
            "count (SNL/AutoReP convention: the ResNet stem ReLU is not "
            "counted)"
        )
    else:
        convention = "every ReLU element counted"
    return ReLUCount(
        total=sum(row.total for row in counted),
        kept=sum(row.kept for row in counted),
        rows=tuple(rows),
        other=tuple(other),
        convention=convention,
    )
