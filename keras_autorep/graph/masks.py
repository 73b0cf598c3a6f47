"""Setting, choosing and freezing the binary masks of ``ReLUSelector`` sites.

Shared by SNL, SENet and budget allocation. Masks are given per site in the
shape of the site's indicator (``H x W x C`` per pixel, ``C`` per channel),
or flat; counts and budgets are always in ReLU elements, so one channel
indicator of an ``H x W x C`` site costs ``H * W`` ReLUs.

A *frozen* site has ``alpha = +1`` where its mask is 1 and ``-1`` where it
is 0, and ``alpha`` excluded from training, so the hysteresis rule of
``ReLUSelector`` keeps the mask as it is while the rest of the model trains.
Freezing is a property of the variable, not of the saved model: call
``freeze_masks`` again on a reloaded model before training it further.
"""

import keras
import numpy as np

from keras_autorep.budgets import parse_budget
from keras_autorep.graph.counting import LiveReLUCount
from keras_autorep.graph.sites import selectors


def _sites(model):
    sites = selectors(model)
    if not sites:
        raise ValueError(
            f"model {model.name!r} has no ReLUSelector layers; convert it "
            "with keras_autorep.replace_relus first"
        )
    return sites


def site_sizes(model):
    """``{selector name: ReLU elements per example}``, in graph order."""
    return {site.name: site.total_relus for site in _sites(model)}


def selector_budget(model, budget):
    """The part of ``budget`` left to the selectors.

    ReLUs kept outside selectors (plain ReLU layers, hardened sites) are
    always computed, so they come off the budget first.

    Args:
        model: a model with ``ReLUSelector`` layers.
        budget: anything ``parse_budget`` accepts (percentages of the
            model's total ReLUs).
    """
    _sites(model)
    count = LiveReLUCount(model)
    budget = parse_budget(budget, total=count.total)
    fixed = count.fixed
    if fixed > budget:
        raise ValueError(
            f"the model has {fixed:,} ReLUs kept outside selectors, more "
            f"than the budget of {budget:,}"
        )
    return budget - fixed


def check_counts(model, counts, budget=None):
    """Validate per-site ReLU counts against the sites (and a budget)."""
    sizes = site_sizes(model)
    if set(counts) != set(sizes):
        raise ValueError(
            f"counts must name every selector of {model.name!r} and nothing "
            f"else: {sorted(set(counts) ^ set(sizes))} differ"
        )
    for name, count in counts.items():
        if not 0 <= count <= sizes[name]:
            raise ValueError(
                f"count {count!r} for {name!r} is outside [0, {sizes[name]:,}]"
            )
    if budget is not None and sum(counts.values()) > budget:
        raise ValueError(
            f"counts keep {sum(counts.values()):,} ReLUs, more than the "
            f"selector budget of {budget:,}"
        )


def _units(site, count):
    """Indicators one site can keep within ``count`` ReLU elements."""
    return int(count) // site.relus_per_indicator


def random_masks(model, counts, seed=None):
    """Masks keeping ``counts[site]`` ReLUs per site at random positions.

    With per-channel indicators each site keeps
    ``counts[site] // (H * W)`` whole channels.

    Args:
        model: a model with ``ReLUSelector`` layers.
        counts: ``{site: ReLUs to keep}``.
        seed: seed of the NumPy generator.

    Returns:
        ``{site: boolean array of the indicator's shape}``.
    """
    check_counts(model, counts)
    rng = np.random.default_rng(seed)
    masks = {}
    for site in _sites(model):
        shape = tuple(site.mask.shape)
        flat = np.zeros(int(np.prod(shape)), dtype=bool)
        kept = _units(site, counts[site.name])
        flat[rng.permutation(flat.size)[:kept]] = True
        masks[site.name] = flat.reshape(shape)
    return masks


def top_masks(model, scores, budget=None, counts=None):
    """Masks keeping the positions with the largest scores.

    Exactly one of ``budget`` (one ranking over all sites, SNL) or
    ``counts`` (top-k inside each site, SENet / an allocation) is given.
    Ties go to the lower flat index. With per-channel indicators a channel
    costs ``H * W`` ReLUs and is kept only while it fits.

    Args:
        model: a model with ``ReLUSelector`` layers.
        scores: ``{site: array of the indicator's shape (or flat)}``.
        budget: total ReLU elements to keep over all sites.
        counts: ``{site: ReLUs to keep}``.

    Returns:
        ``{site: boolean array of the indicator's shape}``.
    """
    if (budget is None) == (counts is None):
        raise ValueError("give exactly one of budget and counts")
    sites = _sites(model)
    flat_scores = {
        s.name: np.asarray(scores[s.name], dtype="float64").ravel()
        for s in sites
    }
    if counts is not None:
        check_counts(model, counts)
        keep = {
            s.name: np.argsort(-flat_scores[s.name], kind="stable")[
                : _units(s, counts[s.name])
            ]
            for s in sites
        }
    else:
        keep = _global_top(sites, flat_scores, int(budget))
    masks = {}
    for site in sites:
        flat = np.zeros(flat_scores[site.name].size, dtype=bool)
        flat[keep[site.name]] = True
        masks[site.name] = flat.reshape(tuple(site.mask.shape))
    return masks


def _global_top(sites, flat_scores, budget):
    """Greedy by score over all sites: ``{site: kept flat indices}``."""
    all_scores = np.concatenate([flat_scores[s.name] for s in sites])
    owner = np.concatenate(
        [np.full(flat_scores[s.name].size, i) for i, s in enumerate(sites)]
    )
    cost = np.array([s.relus_per_indicator for s in sites])[owner]
    order = np.argsort(-all_scores, kind="stable")
    if np.all(cost == 1):
        chosen = order[:budget]
    else:
        chosen, spent = [], 0
        for index in order:
            if spent + cost[index] <= budget:
                chosen.append(index)
                spent += cost[index]
    chosen = np.asarray(chosen, dtype=int)
    offsets = np.cumsum([0] + [flat_scores[s.name].size for s in sites])
    return {
        s.name: chosen[owner[chosen] == i] - offsets[i]
        for i, s in enumerate(sites)
    }


def set_masks(model, masks, freeze=False):
    """Write binary masks into the selectors, with consistent indicators.

    Unfrozen, ``alpha`` keeps its magnitude and takes the mask's sign
    (``+|alpha|`` kept, ``-|alpha|`` removed), so AutoReP's hysteresis
    starts from these masks and training can still move them. Frozen,
    ``alpha`` becomes ``+-1`` and non-trainable (see the module doc).

    Args:
        model: a model with ``ReLUSelector`` layers.
        masks: ``{site: boolean array of the indicator's shape, or flat}``
            for every site.
        freeze: freeze the masks.
    """
    for site in _sites(model):
        shape = tuple(site.mask.shape)
        mask = np.asarray(masks[site.name], dtype=bool).reshape(shape)
        magnitude = (
            np.ones(shape)
            if freeze
            else np.abs(keras.ops.convert_to_numpy(site.alpha))
        )
        site.mask.assign(mask.astype(site.mask.dtype))
        alpha = np.where(mask, magnitude, -magnitude)
        site.alpha.assign(alpha.astype(site.alpha.dtype))
        site.alpha.trainable = not freeze


def current_masks(model):
    """``{site: boolean mask of the indicator's shape}`` as stored now."""
    return {
        s.name: keras.ops.convert_to_numpy(s.mask) > 0.5 for s in _sites(model)
    }


def freeze_masks(model):
    """Freeze every selector's current mask (see the module doc)."""
    set_masks(model, current_masks(model), freeze=True)
