"""Model conversion: ReLUs -> selectors (training) -> PartialReLU (inference).

``replace_relus`` turns every ReLU of a Sequential or functional model into a
``ReLUSelector``; ``harden`` turns every selector into a ``PartialReLU`` that
keeps at most the budgeted number of ReLUs; ``gather_form`` gives a hardened
model's ``PartialReLU`` layers their PI form. All return new models and
carry the weights of all other layers over.
"""

import warnings

import keras
import numpy as np

from keras_autorep.budgets import parse_budget
from keras_autorep.costs import CostBudget
from keras_autorep.graph.counting import counted
from keras_autorep.graph.fold import fold_linear_sites
from keras_autorep.graph.masks import (
    current_masks,
    land_masks,
    selector_budget,
)
from keras_autorep.graph.rewrite import GraphRewriter
from keras_autorep.graph.sites import (
    FUSED,
    iter_layers,
    selectors,
    site_of,
    sites,
)
from keras_autorep.layers import PartialReLU, ReLUSelector
from keras_autorep.layers.activations import canonical_name


_AVERAGE_OF = {
    keras.layers.MaxPooling1D: keras.layers.AveragePooling1D,
    keras.layers.MaxPooling2D: keras.layers.AveragePooling2D,
    keras.layers.MaxPooling3D: keras.layers.AveragePooling3D,
    keras.layers.GlobalMaxPooling1D: keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalMaxPooling2D: keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling3D: keras.layers.GlobalAveragePooling3D,
}
MAXPOOL_OPTIONS = ("keep", "average")


def _average_pooling(layer):
    """The average-pooling twin of a max-pooling layer (same config)."""
    return _AVERAGE_OF[type(layer)].from_config(layer.get_config())


def _selectable(activations):
    """The canonical names of ``activations`` (a name or a sequence)."""
    if isinstance(activations, str):
        activations = (activations,)
    names = tuple(dict.fromkeys(canonical_name(a) for a in activations))
    if not names:
        raise ValueError("activations must name at least one activation")
    return names


def _check_convertible(model, activations):
    """``ValueError`` naming a site of a selected activation that
    ``replace_relus`` cannot convert."""
    for site in sites(model):
        if (site.form is None and site.activation in activations
                and not site.is_relu):
            raise ValueError(
                f"{site.label} {site.layer.name!r} is not the "
                f"{site.activation!r} of keras_autorep.layers.activations "
                "(another slope or an approximate form), so it cannot "
                "become a selector; rebuild it as that activation or leave "
                f"{site.activation!r} out of activations"
            )


def replace_relus(model, maxpool="keep", activations=("relu",),
                  replacement=None, **selector_options):
    """Return a copy of ``model`` with every ReLU (or other selected
    activation) replaced by a selector.

    Replaced, for every activation named in ``activations``: layers that
    apply it (``ReLU()``, ``ReLU(max_value=6)``, ``Activation("silu")``,
    ...), ``keras.ops`` nodes of a functional model (``ops.relu(x)``,
    ``ops.silu(x)``) and fused ``activation=...`` (the layer is copied with
    a linear activation and a ``ReLUSelector`` named ``<layer>_<activation>``
    follows it): every site that ``keras_autorep.graph.sites`` calls
    convertible to them. The selectors keep the original activation at
    kept positions and fit their polynomials to it. Other ``keras.ops``
    nodes (``x + 3``, ``x * y``) are copied. All weights are carried over;
    with all masks at 1 (the initial state) the new model computes the
    same function as the original.

    Args:
        model: a built ``keras.Sequential`` or functional model.
        maxpool: ``"keep"`` (default) or ``"average"``: replace every
            max-pooling layer (a comparison per window element in private
            inference) by average pooling with the same configuration, as
            CryptoNAS and DeepReDuce do; the function changes, so train.
        activations: the activations that become sites (names in
            ``keras_autorep.layers.activations``: ``"relu"`` (default),
            ``"relu6"``, ``"leaky_relu"`` (slope 0.2), ``"hard_sigmoid"``,
            ``"hard_swish"``, ``"silu"``, ``"gelu"``, ``"sigmoid"``).
        replacement: what removed positions compute (``"poly2"``, the
            default; ``"poly1"``, ``"identity"``, ``"auto"``: see
            ``ReLUSelector``), for every site, or ``{site name: form}``
            (the names are the selectors': a fused site's is
            ``<layer>_<activation>``; unnamed sites get ``"poly2"``).
        **selector_options: passed to every ``ReLUSelector`` (e.g.
            ``granularity="channel"``).

    Returns:
        A new model of the same kind (Sequential stays Sequential).

    Raises:
        ValueError: a site of a selected activation that cannot be
            converted (e.g. ``LeakyReLU(0.3)`` with ``"leaky_relu"``); the
            message names it.
    """
    if maxpool not in MAXPOOL_OPTIONS:
        raise ValueError(
            f"maxpool must be one of {MAXPOOL_OPTIONS}, got {maxpool!r}"
        )
    if "activation" in selector_options:
        raise ValueError(
            "replace_relus takes activations=(...), not activation=: each "
            "selector applies the activation of the site it replaces"
        )
    activations = _selectable(activations)
    forms = replacement if isinstance(replacement, dict) else {}
    for form in {*forms.values(), replacement if not forms else None}:
        # Validate the options before any cloning.
        ReLUSelector(replacement=form, **selector_options)
    _check_convertible(model, activations)
    placed = set()

    def selector(name, activation):
        placed.add(name)
        form = forms.get(name, "poly2") if forms else replacement
        return ReLUSelector(name=name, activation=activation,
                            replacement=form, **selector_options)

    def is_pool(layer):
        return maxpool == "average" and type(layer) in _AVERAGE_OF

    def is_target(layer):
        site = site_of(layer)
        return (site is not None and site.convertible_to(activations)
                or is_pool(layer))

    def replace(layer):
        if is_pool(layer):
            return [_average_pooling(layer)]
        if not is_target(layer):
            return None
        site = site_of(layer)
        if site.form != FUSED:
            return [selector(layer.name, site.activation)]
        return [
            rewriter.clone(layer, activation="linear"),
            selector(f"{layer.name}_{site.activation}", site.activation),
        ]

    rewriter = GraphRewriter(replace, is_target)
    converted = rewriter.rebuild(model)
    unknown = sorted(set(forms) - placed)
    if unknown:
        raise ValueError(f"replacement names no site {unknown}; the sites: "
                         f"{sorted(placed)}")
    return converted


def _expanded(selector, mask):
    """Broadcast a per-indicator mask to the full activation shape."""
    return np.broadcast_to(mask, selector.activation_shape).ravel()


def final_masks(model, budget=None, count=None):
    """The flat kept-position masks that hardening will use, per selector.

    The masks as trained; if they keep more than ``budget`` ReLUs (with the
    ReLUs kept outside selectors, and every call of a shared selector),
    only the kept positions with the largest indicators that fit survive
    (``land_masks(..., fill=False)``; ``count``: the model's
    ``ReLUCount``, computed when needed and not given).

    Returns:
        ``{selector name: boolean array of H*W*C}``.
    """
    if budget is None:
        masks = current_masks(model)
    else:
        masks = land_masks(model, budget, fill=False, count=count)
    return {s.name: _expanded(s, masks[s.name]) for s in selectors(model)}


XLA_MODES = ("model", "sites", None)


def harden(model, budget=None, count=None, fold=True, xla="model"):
    """Return the inference model: every ``ReLUSelector`` -> ``PartialReLU``.

    Indicators and statistics are dropped; the binary masks and per-channel
    polynomial coefficients are frozen. The result never keeps more than
    ``budget`` ReLUs, counting every call of a shared selector and the ReLUs
    kept outside selectors (plain ReLU layers, and traced ReLUs of custom
    layers or ``keras.ops`` nodes, which stay and are warned about); see
    ``final_masks``. Where no trimming was needed its outputs equal the
    selector model's inference outputs.

    Where a site gathers and scatters or squares, XLA fuses its ops into
    a few loops (``benchmarks/overhead.py``): with ``xla="model"`` the
    result predicts through XLA as a whole (``jit_compile=True``, also on
    the TensorFlow backend, whose "auto" leaves XLA off on CPU), fastest at
    small batches; with ``xla="sites"`` each such site compiles alone and
    the convolutions keep TensorFlow's kernels, which on CPU are faster
    than XLA's at large batches. ``compile(jit_compile=False)`` turns the
    first off. A model whose every site is one elementwise pass
    (``PartialReLU.elementwise``: no ReLU kept and an identity or affine
    replacement, or every ReLU kept) keeps the plain model's setting.

    Args:
        model: a Sequential or functional model, usually with
            ``ReLUSelector`` layers (from ``replace_relus``).
        budget: optional ReLU budget (anything ``parse_budget`` accepts;
            percentages refer to the model's total ReLUs), or a
            ``CostBudget`` (``keras_autorep.pi.cost_budget``): the masks
            are trimmed until the predicted cost fits.
        count: ``count_relus(model)`` if the caller has it (computed once
            otherwise, and passed to every step).
        fold: fold every ``poly1`` site that keeps no ReLU into the linear
            layer feeding it, where that is exact (``fold_linear_sites``):
            the site then computes nothing.
        xla: where XLA compiles the sites that need fusing: ``"model"``
            (the whole model), ``"sites"`` (each site alone) or ``None``.

    Raises:
        ValueError: the ReLUs kept outside selectors alone exceed the
            budget; the message names where they are.
    """
    if xla not in XLA_MODES:
        raise ValueError(f"xla must be one of {XLA_MODES}, got {xla!r}")
    count = counted(model, count)
    if count.traced:
        warnings.warn(
            f"{sum(row.kept for row in count.traced):,} ReLUs computed "
            "outside any ReLU layer ("
            + ", ".join(repr(row.layer) for row in count.traced)
            + ") are counted as fixed ReLUs: they stay in the hardened "
            "model and take their share of the budget",
            stacklevel=2,
        )
    if budget is not None and not isinstance(budget, CostBudget):
        budget = parse_budget(budget, total=count.total)
        selector_budget(model, budget, count)  # the fixed ReLUs must fit
    masks = final_masks(model, budget, count)

    def replace(layer):
        if not isinstance(layer, ReLUSelector):
            return None
        kept = np.flatnonzero(masks[layer.name])
        form = layer.current_form()
        return [
            PartialReLU(
                num_kept=kept.size,
                form=form,
                kept_indices=kept,
                coefficients=keras.ops.convert_to_numpy(
                    layer.form_coefficients(form)),
                activation=layer.activation,
                name=layer.name,
            )
        ]

    def is_target(layer):
        return isinstance(layer, ReLUSelector)

    hardened = GraphRewriter(replace, is_target).rebuild(model)
    if fold:
        hardened = fold_linear_sites(hardened)
    fused = list(_fused_sites(hardened))
    if fused and xla == "model":
        hardened.jit_compile = True
    for layer in fused:
        layer.xla = xla == "sites"
    return hardened


def _fused_sites(model):
    """The ``PartialReLU`` layers of ``model`` that XLA should fuse: more
    than one elementwise pass (``PartialReLU.elementwise``)."""
    return (layer for layer in iter_layers(model)
            if isinstance(layer, PartialReLU) and not layer.elementwise)


def needs_model_xla(model):
    """Whether a hardened model has a site that XLA should fuse and that
    does not compile alone (``PartialReLU.xla``): such a model predicts
    fastest compiled as a whole."""
    return any(not layer.xla for layer in _fused_sites(model))


def _in_scatter_form(layer):
    return isinstance(layer, PartialReLU) and layer.merge == "scatter"


def gather_form(model):
    """``model`` with every ``PartialReLU`` in its PI form
    (``merge="gather"``: no scatter op, the polynomial on the removed
    elements only), nested models included; same function, same weights.

    Returns ``model`` itself when nothing changes, else a new model (the
    ONNX export traces it; ``model`` keeps its form).
    """
    if not any(_in_scatter_form(layer) for layer in iter_layers(model)):
        return model

    def replace(layer):
        if _in_scatter_form(layer):
            return [rewriter.clone(layer, merge="gather")]
        return None

    rewriter = GraphRewriter(replace, _in_scatter_form)
    return rewriter.rebuild(model)
