"""Counting ReLUs: the cost measure of private inference.

Convention: one ReLU is one element of one activation map passed through
ReLU, per input example, counted at every call of a layer. Every ReLU site
(``keras_autorep.graph.sites``) is counted: plain ReLU layers, fused
``activation="relu"``, ``ReLUSelector`` (kept = mask sum), ``SoftReLUMask``
(kept = mask above its threshold), ``PartialReLU`` (kept = its kept
positions) and ``PolynomialActivation`` (nothing kept).

Other comparison-based sites (relu6, leaky ReLU, max-pooling, ...) also cost
comparisons in private inference but are not ReLUs: they are listed in
``ReLUCount.other`` with their output element count and left out of the
totals.
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from keras_autorep.adapters.keras_graph import call_nodes
from keras_autorep.graph.sites import SELECTOR, SOFT_MASK, sites

CONVENTION = "every ReLU element counted, per example and per call"


@dataclasses.dataclass(frozen=True)
class SiteCount:
    """One row of the ReLU table (elements per example, all calls)."""

    layer: str
    kind: str
    shape: tuple
    total: int
    kept: int
    fused: bool = False

    @property
    def calls(self):
        """How many times the layer is applied."""
        return self.total // max(1, int(np.prod(self.shape)))


@dataclasses.dataclass(frozen=True)
class ReLUCount:
    """Result of ``count_relus``.

    Attributes:
        total: ReLU elements per example the model would have with every
            ReLU site a ReLU (the ``N`` of the budget loss).
        kept: ReLU elements per example actually computed.
        rows: one ``SiteCount`` per ReLU site.
        other: ``SiteCount`` rows of other comparison-based sites.
        convention: the counting convention, in words.
    """

    total: int
    kept: int
    rows: tuple
    other: tuple
    convention: str = CONVENTION

    @property
    def polynomial(self):
        """Elements that go through a polynomial instead of ReLU."""
        return self.total - self.kept

    def totals(self):
        """``{"relu_total", "relu_kept", "polynomial"}``."""
        return {
            "relu_total": self.total,
            "relu_kept": self.kept,
            "polynomial": self.polynomial,
        }

    def table(self):
        """The per-layer table as text."""
        lines = [
            f"{'layer':<34} {'kind':<22} {'shape':<16} {'total':>10} "
            f"{'kept':>10}"
        ]
        for row in self.rows + self.other:
            lines.append(
                f"{row.layer:<34} {row.kind:<22} {str(row.shape):<16} "
                f"{row.total:>10,} {row.kept:>10,}"
            )
        lines.append(f"{'TOTAL':<74} {self.total:>10,} {self.kept:>10,}")
        lines.append(f"convention: {self.convention}")
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
            "convention": self.convention,
            "layers": [dataclasses.asdict(r) for r in self.rows],
            "other": [dataclasses.asdict(r) for r in self.other],
        }


def output_shapes(layer):
    """Per-call output shapes (without batch) of a layer in a graph."""
    shapes = []
    for node in call_nodes(layer):
        outputs = keras.tree.flatten(node.output_tensors)
        if outputs:
            shapes.append(tuple(outputs[0].shape[1:]))
    return shapes


def _row(site):
    shapes = output_shapes(site.layer)
    name = site.layer.name
    if not shapes:
        raise ValueError(
            f"layer {name!r} was never called on symbolic inputs; "
            "count_relus needs a functional or Sequential model with an "
            "Input"
        )
    if any(None in shape for shape in shapes):
        raise ValueError(
            f"layer {name!r} has an activation shape with unknown "
            f"dimensions {shapes[0]}; build the model on a fixed input size"
        )
    per_call = int(np.prod(shapes[0]))
    kept = site.kept_per_call()
    kept = per_call if kept is None else kept
    calls = len(shapes)
    return SiteCount(
        name, site.label, shapes[0], per_call * calls, int(kept) * calls,
        site.fused,
    )


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(f"count_relus expects a keras.Model, got {model!r}")
    if not model.built:
        raise ValueError(
            "count_relus needs a built model: give it an Input or call "
            "model.build(input_shape) first"
        )


def count_relus(model):
    """Count the ReLUs of a built Keras model, per layer.

    Args:
        model: a built functional or Sequential model (nested models are
            descended into).

    Returns:
        A ``ReLUCount``: ``.total``, ``.kept``, ``.rows`` (layer, kind,
        activation shape, total, kept), ``.other`` and ``.convention``;
        ``print(count)`` shows the table.
    """
    _check_model(model)
    rows, other = [], []
    for site in sites(model):
        (rows if site.is_relu else other).append(_row(site))
    return ReLUCount(
        total=sum(row.total for row in rows),
        kept=sum(row.kept for row in rows),
        rows=tuple(rows),
        other=tuple(other),
    )


class LiveReLUCount:
    """A model's kept ReLUs as a scalar tensor, read during training.

    Selector sites count their straight-through masks (so the count is
    differentiable with respect to the indicators), ``SoftReLUMask`` sites
    their positions above the threshold; every other ReLU site is a
    constant (``fixed``). Each site counts once per call of its layer.

    Args:
        model: a built model.
    """

    def __init__(self, model):
        count = count_relus(model)
        calls = {row.layer: row.calls for row in count.rows}
        live = sites(model, (SELECTOR, SOFT_MASK))
        self.total = count.total
        self.sites = [(site.layer, calls[site.layer.name]) for site in live]
        live_names = {layer.name for layer, _ in self.sites}
        self.fixed = sum(
            row.kept for row in count.rows if row.layer not in live_names
        )

    def __call__(self):
        terms = [
            layer.kept_relus() * float(n_calls) for layer, n_calls in self.sites
        ]
        return ops.sum(ops.stack([ops.zeros(()), *terms])) + float(self.fixed)
