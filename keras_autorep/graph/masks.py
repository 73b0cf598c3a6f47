"""Setting, choosing and freezing the binary masks of ``ReLUSelector`` sites.

Shared by hardening, the recipes' landing, SNL, SENet and budget
allocation. Masks are given per site in the shape of the site's indicator
(``H x W x C`` per pixel, ``C`` per channel), or flat; counts and budgets
are always in ReLU elements per example, so one channel indicator of an
``H x W x C`` site costs ``H * W`` ReLUs, and every indicator of a selector
called twice costs twice.

A *frozen* site has ``alpha = +1`` where its mask is 1 and ``-1`` where it
is 0, and ``alpha`` excluded from training, so the hysteresis rule of
``ReLUSelector`` keeps the mask as it is while the rest of the model trains.
Freezing is a property of the variable, not of the saved model: call
``freeze_masks`` again on a reloaded model before training it further.

Every function that needs the model's ReLU count takes it as ``count``
(its ``count_relus(model)``, computed when not given) and passes it on, so
a chain of calls on one model state counts it once.
"""

import keras
import numpy as np

from keras_autorep.budgets import parse_budget
from keras_autorep.costs import CostBudget
from keras_autorep.graph.costing import land_cost_masks
from keras_autorep.graph.counting import LiveReLUCount, counted
from keras_autorep.graph.sites import selectors


def _sites(model):
    sites = selectors(model)
    if not sites:
        raise ValueError(
            f"model {model.name!r} has no ReLUSelector layers; convert it "
            "with keras_autorep.replace_relus first"
        )
    return sites


def _costs(model, count):
    """``{selector name: ReLU elements one indicator costs}`` (per example,
    all calls of the layer)."""
    return {
        layer.name: layer.relus_per_indicator * calls
        for layer, calls in LiveReLUCount(model, count).sites
    }


def site_sizes(model, count=None):
    """``{selector name: ReLU elements per example}`` (all calls), in graph
    order (``count``: see the module doc)."""
    costs = _costs(model, counted(model, count))
    return {
        site.name: site.total_relus // site.relus_per_indicator
        * costs[site.name]
        for site in _sites(model)
    }


def selector_budget(model, budget, count=None):
    """The part of ``budget`` left to the selectors.

    ReLUs kept outside selectors (plain ReLU layers, hardened sites) are
    always computed, so they come off the budget first.

    Args:
        model: a built model (usually with ``ReLUSelector`` layers).
        budget: anything ``parse_budget`` accepts (percentages of the
            model's total ReLUs).
        count: the model's ``ReLUCount`` (see the module doc).

    Raises:
        ValueError: the ReLUs kept outside selectors exceed the budget
            (the message says where they are).
    """
    count = counted(model, count)
    live = LiveReLUCount(model, count)
    budget = parse_budget(budget, total=live.total)
    if live.fixed > budget:
        raise ValueError(
            f"the model has {live.fixed:,} ReLUs kept outside selectors, "
            f"more than the budget of {budget:,} (at "
            f"{fixed_relu_sources(model, count=count)}): replace_relus turns "
            "plain ReLU "
            "layers and keras.ops.relu nodes into selectors; traced ReLUs "
            "of custom layers or other keras.ops nodes (ops.maximum(x, 0), "
            "...) stay, so rewrite those with ReLU layers"
        )
    return budget - live.fixed


def fixed_relu_sources(model, limit=4, count=None):
    """Where a model keeps ReLUs outside selectors, in words (the largest
    ``limit`` rows)."""
    count = counted(model, count)
    rows = [row for row in count.rows
            if row.kept and row.kind not in ("ReLUSelector", "SoftReLUMask")]
    rows.sort(key=lambda row: -row.kept)
    text = ", ".join(f"{row.layer!r} ({row.kind}) {row.kept:,}"
                     for row in rows[:limit])
    return text + (f" and {len(rows) - limit} more" if len(rows) > limit
                   else "")


def check_counts(model, counts, budget=None, count=None):
    """Validate per-site ReLU counts against the sites (and a budget);
    ``count``: see the module doc."""
    sizes = site_sizes(model, count)
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


def _units(cost, count):
    """Indicators of ``cost`` ReLUs each that fit in ``count`` ReLUs."""
    return int(count) // cost


def random_masks(model, counts, seed=None, count=None):
    """Masks keeping ``counts[site]`` ReLUs per site at random positions.

    With per-channel indicators each site keeps
    ``counts[site] // (H * W)`` whole channels.

    Args:
        model: a model with ``ReLUSelector`` layers.
        counts: ``{site: ReLUs to keep}``.
        seed: seed of the NumPy generator.
        count: the model's ``ReLUCount`` (see the module doc).

    Returns:
        ``{site: boolean array of the indicator's shape}``.
    """
    count = counted(model, count)
    check_counts(model, counts, count=count)
    costs = _costs(model, count)
    rng = np.random.default_rng(seed)
    masks = {}
    for site in _sites(model):
        shape = tuple(site.mask.shape)
        flat = np.zeros(int(np.prod(shape)), dtype=bool)
        kept = _units(costs[site.name], counts[site.name])
        flat[rng.permutation(flat.size)[:kept]] = True
        masks[site.name] = flat.reshape(shape)
    return masks


def top_masks(model, scores, budget=None, counts=None, count=None):
    """Masks keeping the positions with the largest scores.

    Exactly one of ``budget`` (one ranking over all sites, SNL) or
    ``counts`` (top-k inside each site, SENet / an allocation) is given.
    Ties go to the lower flat index. With per-channel indicators a channel
    costs ``H * W`` ReLUs and is kept only while it fits. Positions with a
    score of ``-inf`` are never kept.

    Args:
        model: a model with ``ReLUSelector`` layers.
        scores: ``{site: array of the indicator's shape (or flat)}``.
        budget: total ReLU elements to keep over all sites.
        counts: ``{site: ReLUs to keep}``.
        count: the model's ``ReLUCount`` (see the module doc).

    Returns:
        ``{site: boolean array of the indicator's shape}``.
    """
    if (budget is None) == (counts is None):
        raise ValueError("give exactly one of budget and counts")
    sites = _sites(model)
    count = counted(model, count)
    costs = _costs(model, count)
    flat_scores = {
        s.name: np.asarray(scores[s.name], dtype="float64").ravel()
        for s in sites
    }
    if counts is not None:
        check_counts(model, counts, count=count)
        keep = {}
        for s in sites:
            order = np.argsort(-flat_scores[s.name], kind="stable")
            order = order[flat_scores[s.name][order] > -np.inf]
            keep[s.name] = order[: _units(costs[s.name], counts[s.name])]
    else:
        keep = _global_top(sites, flat_scores, int(budget), costs)
    masks = {}
    for site in sites:
        flat = np.zeros(flat_scores[site.name].size, dtype=bool)
        flat[keep[site.name]] = True
        masks[site.name] = flat.reshape(tuple(site.mask.shape))
    return masks


def _global_top(sites, flat_scores, budget, costs):
    """Greedy by score over all sites, skipping what no longer fits and
    every ``-inf`` score: ``{site: kept flat indices}``."""
    all_scores = np.concatenate([flat_scores[s.name] for s in sites])
    owner = np.concatenate(
        [np.full(flat_scores[s.name].size, i) for i, s in enumerate(sites)]
    )
    cost = np.array([costs[s.name] for s in sites])[owner]
    order = np.argsort(-all_scores, kind="stable")
    order = order[all_scores[order] > -np.inf]
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


def land_masks(model, budget, fill=True, count=None):
    """Masks that keep as close to ``budget`` ReLUs as fits, never above.

    Above the budget, the kept positions with the largest indicators
    ``alpha`` survive (trim); with ``fill``, below it the removed positions
    with the largest ``alpha`` are switched back on until the next one
    would not fit. ReLUs kept outside selectors come off the budget first.
    A ``CostBudget`` lands on the predicted cost instead
    (``land_cost_masks``).

    Args:
        model: a model with ``ReLUSelector`` layers.
        budget: the model's ReLU budget (anything ``parse_budget``
            accepts), or a ``CostBudget``.
        fill: also fill up to the budget (the recipes' landing); without
            it only trim (``harden``).
        count: the model's ``ReLUCount`` (see the module doc).

    Returns:
        ``{site: boolean array of the indicator's shape}``.

    Raises:
        ValueError: the ReLUs kept outside selectors exceed the budget.
    """
    count = counted(model, count)
    if isinstance(budget, CostBudget):
        return land_cost_masks(model, budget, fill, count)
    room = selector_budget(model, budget, count)
    current = current_masks(model)
    costs = _costs(model, count)
    kept = sum(int(current[name].sum()) * costs[name] for name in current)
    if kept == room or (kept < room and not fill) or not current:
        return current
    scores = {}
    for site in _sites(model):
        alpha = keras.ops.convert_to_numpy(site.alpha).astype("float64")
        mask = current[site.name]
        if kept > room:  # trim: rank the kept positions only
            scores[site.name] = np.where(mask, alpha, -np.inf)
        else:  # fill: keep every kept position, then the best removed ones
            scores[site.name] = np.where(mask, np.inf, alpha)
    return top_masks(model, scores, budget=room, count=count)


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
        s.name: keras.ops.convert_to_numpy(s.mask) > 0.5
        for s in selectors(model)
    }


def freeze_masks(model):
    """Freeze every selector's current mask (see the module doc)."""
    set_masks(model, current_masks(model), freeze=True)
