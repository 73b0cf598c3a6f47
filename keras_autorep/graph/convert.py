"""Model conversion: ReLUs -> selectors (training) -> PartialReLU (inference).

``replace_relus`` turns every ReLU of a Sequential or functional model into a
``ReLUSelector``; ``harden`` turns every selector into a ``PartialReLU`` that
keeps at most the budgeted number of ReLUs. Both return new models and carry
the weights of all other layers over.
"""

import keras
import numpy as np

from keras_autorep.budgets import parse_budget
from keras_autorep.graph.counting import count_relus
from keras_autorep.graph.rewrite import GraphRewriter
from keras_autorep.graph.sites import STANDALONE_RELU, selectors, site_of
from keras_autorep.layers import PartialReLU, ReLUSelector


def replace_relus(model, **selector_options):
    """Return a copy of ``model`` with every ReLU replaced by a selector.

    Replaced: ``ReLU()`` layers, ``Activation("relu")`` and fused
    ``activation="relu"`` (the layer is copied with a linear activation and a
    ``ReLUSelector`` named ``<layer>_relu`` follows it): every site that
    ``keras_autorep.graph.sites`` calls convertible. All weights are
    carried over; with all masks at 1 (the initial state) the new model
    computes the same function as the original.

    Args:
        model: a built ``keras.Sequential`` or functional model.
        **selector_options: passed to every ``ReLUSelector`` (e.g.
            ``granularity="channel"``, ``degree=1``, ``fit="identity"``).

    Returns:
        A new model of the same kind (Sequential stays Sequential).
    """
    ReLUSelector(**selector_options)  # validate options before any cloning

    def is_target(layer):
        site = site_of(layer)
        return site is not None and site.convertible

    def replace(layer):
        if not is_target(layer):
            return None
        if site_of(layer).kind == STANDALONE_RELU:
            return [ReLUSelector(name=layer.name, **selector_options)]
        return [
            rewriter.clone(layer, activation="linear"),
            ReLUSelector(name=f"{layer.name}_relu", **selector_options),
        ]

    rewriter = GraphRewriter(replace, is_target)
    return rewriter.rebuild(model)


def _expanded(selector, values):
    """Broadcast per-indicator values to the full activation shape."""
    return np.broadcast_to(
        keras.ops.convert_to_numpy(values), selector.activation_shape
    ).ravel()


def final_masks(model, budget=None):
    """The flat kept-position masks that hardening will use, per selector.

    The masks as trained; if they keep more than ``budget`` ReLUs, only the
    ``budget`` kept positions with the largest indicator values survive.

    Returns:
        ``{selector name: boolean array of H*W*C}``.
    """
    sites = selectors(model)
    masks = {s.name: _expanded(s, s.mask) > 0.5 for s in sites}
    kept = sum(int(mask.sum()) for mask in masks.values())
    if budget is None or kept <= budget:
        return masks
    scores = np.concatenate(
        [np.where(masks[s.name], _expanded(s, s.alpha), -np.inf) for s in sites]
    )
    survivors = np.zeros(scores.size, dtype=bool)
    if budget > 0:
        survivors[np.argsort(-scores, kind="stable")[:budget]] = True
    offset = 0
    for site in sites:
        size = masks[site.name].size
        masks[site.name] = survivors[offset : offset + size]
        offset += size
    return masks


def harden(model, budget=None):
    """Return the inference model: every ``ReLUSelector`` -> ``PartialReLU``.

    Indicators and statistics are dropped; the binary masks and per-channel
    polynomial coefficients are frozen. The result never keeps more than
    ``budget`` ReLUs (see ``final_masks``); where no trimming was needed its
    outputs equal the selector model's inference outputs.

    Args:
        model: a model with ``ReLUSelector`` layers (from ``replace_relus``).
        budget: optional ReLU budget (anything ``parse_budget`` accepts;
            percentages refer to the model's total ReLUs).
    """
    if budget is not None:
        budget = parse_budget(budget, total=count_relus(model).total)
    masks = final_masks(model, budget)

    def replace(layer):
        if not isinstance(layer, ReLUSelector):
            return None
        kept = np.flatnonzero(masks[layer.name])
        return [
            PartialReLU(
                num_kept=kept.size,
                degree=layer.degree,
                kept_indices=kept,
                coefficients=keras.ops.convert_to_numpy(layer.coefficients),
                name=layer.name,
            )
        ]

    def is_target(layer):
        return isinstance(layer, ReLUSelector)

    return GraphRewriter(replace, is_target).rebuild(model)
