"""Counting ReLUs: the cost measure of private inference.

Convention: one ReLU is one element of one activation map passed through
ReLU, per input example, counted at every call of a layer. Every ReLU site
(``keras_autorep.graph.sites``) is a row: plain ReLU layers, fused
``activation="relu"``, ``ReLUSelector`` (kept = mask sum, the count
``harden`` keeps), ``SoftReLUMask`` (kept = mask above its threshold),
``PartialReLU`` (kept = its kept positions) and ``PolynomialActivation``
(nothing kept).

The table is checked against the model's real computation
(``keras_autorep.graph.tracing``): every comparison-based op of a traced
inference call that no row accounts for (a ReLU inside a custom layer or a
``Lambda``; a ``keras.ops.relu`` node is a site) becomes a *traced* row,
counted as a
ReLU that is always kept, so the count is never below what the graph
computes. Other comparison-based sites (relu6, leaky ReLU, max-pooling,
...) are not ReLUs: they are listed in ``ReLUCount.other`` with their traced
comparisons, and max-pooling comparisons (``window - 1`` per output) are
totalled apart in ``ReLUCount.max_comparisons``.
"""

import collections
import dataclasses

import keras
import numpy as np
from keras import ops

from keras_autorep.graph.sites import SELECTOR, SOFT_MASK, sites
from keras_autorep.graph.tracing import MAX, RELU, SMOOTH, trace_model
from keras_autorep.layers.activations import canonical_name

# Sites whose traced graph applies ReLU to every element whatever the mask
# (their training-time masked form; the count is what hardening keeps).
_MASKED_FORM = (SELECTOR, SOFT_MASK)
TRACED = "traced"

CONVENTION = "every ReLU element counted, per example and per call"


@dataclasses.dataclass(frozen=True)
class SiteCount:
    """One row of the ReLU table (per example, all calls).

    ``total`` and ``kept`` are ReLU elements; ``comparisons`` the traced
    ReLU-equivalent comparisons of an ``other`` row, and of a traced row
    the part that is not a ``max(x, 0)``.
    """

    layer: str
    kind: str
    shape: tuple
    total: int
    kept: int
    fused: bool = False
    comparisons: int = 0
    activation: str = "relu"
    pi_cost: str = "comparison"

    @property
    def calls(self):
        """How many times the layer is applied."""
        return self.total // max(1, int(np.prod(self.shape)))

    @property
    def traced(self):
        """A row of a computation only the traced graph shows."""
        return self.kind.startswith(TRACED)


@dataclasses.dataclass(frozen=True)
class ReLUCount:
    """Result of ``count_relus``.

    Attributes:
        total: ReLU elements per example the model would have with every
            ReLU site a ReLU (the ``N`` of the budget loss).
        kept: ReLU elements per example actually computed.
        rows: one ``SiteCount`` per ReLU site, then one per traced
            computation no site accounts for (kind ``"traced ..."``,
            always kept).
        other: ``SiteCount`` rows of other comparison-based sites.
        convention: the counting convention, in words.
        max_comparisons: max-pooling comparisons per example.
        other_comparisons: comparisons of the other non-pooling sites.
        smooth_elements: elements through the smooth ``other`` sites.
    """

    total: int
    kept: int
    rows: tuple
    other: tuple
    convention: str = CONVENTION
    max_comparisons: int = 0
    other_comparisons: int = 0
    smooth_elements: int = 0

    @property
    def traced(self):
        """The rows of computations only the traced graph shows."""
        return tuple(row for row in self.rows if row.traced)

    @property
    def graph_relus(self):
        """The ``max(x, 0)`` elements an inference graph of this model
        computes (what ``relu_elements`` finds in its export): the kept
        ReLU-site elements without the traced comparisons that are not
        ReLUs."""
        relus = sum(row.kept for row in self.rows if row.activation == "relu")
        return relus - sum(row.comparisons for row in self.traced)

    @property
    def kept_by_activation(self):
        """``{activation: kept elements}`` over the budget sites."""
        kept = collections.Counter()
        for row in self.rows:
            kept[row.activation] += row.kept
        return dict(kept)

    def selectable(self, activations):
        """Budget-site elements once the sites of ``activations`` (names
        or aliases) are selectors, as ``replace_relus(model,
        activations=...)`` makes them: ``total`` and the ``other`` rows
        of those activations."""
        names = {canonical_name(name) for name in activations}
        return self.total + sum(row.total for row in self.other
                                if row.activation in names)

    @property
    def polynomial(self):
        """Elements that go through a polynomial instead of ReLU."""
        return self.total - self.kept

    def totals(self):
        """``{"relu_total", "relu_kept", "polynomial", "max_comparisons",
        "other_comparisons", "smooth_elements", "kept_by_activation"}``
        (``relu_*``: all budget sites, whatever their activation)."""
        return {
            "relu_total": self.total,
            "relu_kept": self.kept,
            "polynomial": self.polynomial,
            "max_comparisons": self.max_comparisons,
            "other_comparisons": self.other_comparisons,
            "smooth_elements": self.smooth_elements,
            "kept_by_activation": self.kept_by_activation,
        }

    def table(self):
        """The per-layer table as text."""
        lines = [
            f"{'layer':<34} {'kind':<22} {'shape':<16} {'total':>10} "
            f"{'kept':>10} {'compar.':>10}"
        ]
        for row in self.rows:
            lines.append(
                f"{row.layer:<34} {row.kind:<22} {str(row.shape):<16} "
                f"{row.total:>10,} {row.kept:>10,} {'':>10}"
            )
        for row in self.other:
            lines.append(
                f"{row.layer:<34} {row.kind:<22} {str(row.shape):<16} "
                f"{'':>10} {'':>10} {row.comparisons:>10,}"
            )
        lines.append(f"{'TOTAL ReLUs':<74} {self.total:>10,} {self.kept:>10,}")
        if set(self.kept_by_activation) - {"relu"}:
            lines.append("budget sites by activation (kept): " + ", ".join(
                f"{name} {kept:,}"
                for name, kept in self.kept_by_activation.items()))
        if self.other:
            lines.append(
                f"max comparisons (max-pooling): {self.max_comparisons:,}; "
                f"other comparisons: {self.other_comparisons:,}; smooth "
                f"elements (piecewise-approximated in PI): "
                f"{self.smooth_elements:,} (not ReLUs, not in the budget)"
            )
        if self.traced:
            lines.append(
                "traced rows: ReLUs the traced graph computes outside any "
                "site (custom layers, keras.ops nodes); counted, always kept"
            )
        lines.append(f"convention: {self.convention}")
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def to_dict(self):
        """JSON-friendly form (for reports)."""
        return {
            "total": self.total,
            "kept": self.kept,
            "polynomial": self.polynomial,
            "max_comparisons": self.max_comparisons,
            "other_comparisons": self.other_comparisons,
            "smooth_elements": self.smooth_elements,
            "kept_by_activation": self.kept_by_activation,
            "convention": self.convention,
            "layers": [dataclasses.asdict(r) for r in self.rows],
            "other": [dataclasses.asdict(r) for r in self.other],
        }


def _row(site, shapes, traced_ops):
    """The site's row from its calls' output shapes in the trace."""
    name = site.layer.name
    if any(None in shape for shape in shapes):
        raise ValueError(
            f"layer {name!r} has an activation shape with unknown "
            f"dimensions {shapes[0]}; build the model on a fixed input size"
        )
    per_call = int(np.prod(shapes[0]))
    kept = site.kept_per_call()
    kept = per_call if kept is None else kept
    calls = len(shapes)
    comparisons = sum(op.comparisons for op in traced_ops
                      if op.kind != SMOOTH)
    relu = site.is_relu and site.activation == "relu"
    return SiteCount(
        name, site.label, shapes[0], per_call * calls, int(kept) * calls,
        site.fused, 0 if relu else comparisons, site.activation or "",
        site.pi_cost,
    )


def _unaccounted(site, row, traced_ops):
    """The traced ops of a ReLU site beyond what its row accounts for: its
    ReLU elements (all of them in the masked training form, the kept ones
    otherwise) and nothing else. A site of another activation accounts
    for all its ops (its activation's comparisons are on its row)."""
    if site.activation != "relu":
        return []
    expected = row.total if site.kind in _MASKED_FORM else row.kept
    relus = [op for op in traced_ops if op.kind == RELU]
    others = [op for op in traced_ops if op.kind != RELU]
    surplus = sum(op.comparisons for op in relus) - expected
    return others + (relus if surplus > 0 else [])


def _traced_rows(ops_by_scope):
    """One always-kept row per layer (or node) with unaccounted ops."""
    rows = []
    for scope, traced_ops in ops_by_scope.items():
        comparisons = sum(op.comparisons for op in traced_ops)
        kinds = "+".join(sorted({op.kind for op in traced_ops}))
        where = "layer" if traced_ops[0].layer is not None else "op node"
        not_relu = sum(op.comparisons for op in traced_ops
                       if op.kind != RELU)
        rows.append(SiteCount(
            scope, f"{TRACED} {kinds} ({where})", traced_ops[0].shape,
            comparisons, comparisons, comparisons=not_relu,
        ))
    return rows


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(f"count_relus expects a keras.Model, got {model!r}")
    if not model.built:
        raise ValueError(
            "count_relus needs a built model: give it an Input or call "
            "model.build(input_shape) first"
        )


def count_relus(model):
    """Count the ReLUs of a built Keras model, per layer, checked against
    its traced graph.

    Args:
        model: a built functional or Sequential model (nested models are
            descended into).

    Returns:
        A ``ReLUCount``: ``.total``, ``.kept``, ``.rows`` (layer, kind,
        activation shape, total, kept; traced rows last), ``.other``,
        ``.max_comparisons``, ``.other_comparisons`` and ``.convention``;
        ``print(count)`` shows the table.
    """
    _check_model(model)
    trace = trace_model(model)
    ops_by_layer = collections.defaultdict(list)
    for op in trace.ops:
        ops_by_layer[op.layer].append(op)
    rows, other, unaccounted = [], [], collections.defaultdict(list)
    max_comparisons = other_comparisons = smooth_elements = 0
    for site in sites(model):
        traced_ops = ops_by_layer.pop(site.layer.name, [])
        shapes = trace.calls.get(site.layer.name)
        if not shapes:
            continue  # a layer the model never calls
        row = _row(site, shapes, traced_ops)
        if site.is_relu:
            rows.append(row)
            extra = _unaccounted(site, row, traced_ops)
            if extra:
                unaccounted[site.layer.name].extend(extra)
            continue
        other.append(row)
        if site.pi_cost == SMOOTH:
            smooth_elements += row.total
        for op in traced_ops:
            if op.kind == MAX:
                max_comparisons += op.comparisons
            elif op.kind != SMOOTH:
                other_comparisons += op.comparisons
    for layer, traced_ops in ops_by_layer.items():
        for op in traced_ops:
            if op.kind != SMOOTH:  # not a comparison: no ReLU to count
                unaccounted[layer if layer is not None else op.node].append(
                    op)
    rows.extend(_traced_rows(unaccounted))
    return ReLUCount(
        total=sum(row.total for row in rows),
        kept=sum(row.kept for row in rows),
        rows=tuple(rows),
        other=tuple(other),
        max_comparisons=max_comparisons,
        other_comparisons=other_comparisons,
        smooth_elements=smooth_elements,
    )


def counted(model, count=None):
    """``count`` if given, else ``count_relus(model)``: how a function that
    takes a model's count as ``count=None`` gets it."""
    return count_relus(model) if count is None else count


class LiveReLUCount:
    """A model's kept ReLUs as a scalar tensor, read during training.

    Selector sites count their straight-through masks (so the count is
    differentiable with respect to the indicators), ``SoftReLUMask`` sites
    their positions above the threshold; every other ReLU, traced rows
    included, is a constant (``fixed``). Each site counts once per call of
    its layer: its row is the one of its layer's name (a site the model
    never calls has none and counts nothing).

    Args:
        model: a built model.
        count: its ``ReLUCount`` (``count_relus(model)``, computed when not
            given).
    """

    def __init__(self, model, count=None):
        count = counted(model, count)
        rows = {row.layer: row for row in count.rows if not row.traced}
        live = [(site.layer, rows[site.layer.name])
                for site in sites(model, _MASKED_FORM)
                if site.layer.name in rows]
        self.total = count.total
        self.sites = [(layer, row.calls) for layer, row in live]
        self.fixed = count.kept - sum(row.kept for _, row in live)

    def __call__(self):
        terms = [
            layer.kept_relus() * float(n_calls) for layer, n_calls in self.sites
        ]
        return ops.sum(ops.stack([ops.zeros(()), *terms])) + float(self.fixed)
