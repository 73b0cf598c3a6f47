"""Splitting a ReLU budget across layers: pure functions, no Keras.

Every split here returns whole per-layer counts that sum to the budget
exactly and never exceed a layer's size. The shared rule is
*proportional water-filling*: layer ``l`` (``size_l`` ReLUs, weight
``w_l >= 0``) keeps the fraction ``f_l = min(1, c * w_l)`` of its ReLUs,
with ``c`` chosen so that ``sum_l f_l * size_l = budget``. So a layer with
twice the weight keeps twice the fraction until it is full, and full layers
pass their share on to the others. Layers of weight 0 keep nothing unless
every positive-weight layer is full; the rest of the budget is then spread
uniformly over them. The real-valued targets are rounded by largest
remainder.

>>> split_budget({"a": 100, "b": 100}, {"a": 1.0, "b": 3.0}, 80)
{'a': 20, 'b': 60}
"""

import math


def _check(sizes, weights, budget):
    if set(weights) != set(sizes):
        raise ValueError(
            f"weights must name the same layers as sizes: "
            f"{sorted(set(weights) ^ set(sizes))} differ"
        )
    for name, size in sizes.items():
        if int(size) != size or size < 0:
            raise ValueError(
                f"size of {name!r} must be an int >= 0, got {size!r}"
            )
    for name, weight in weights.items():
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(
                f"weight of {name!r} must be finite and >= 0, got {weight!r}"
            )
    total = sum(int(size) for size in sizes.values())
    if int(budget) != budget or not 0 <= budget <= total:
        raise ValueError(
            f"budget must be an int in [0, {total:,}] (the layers' total "
            f"size), got {budget!r}"
        )


def _water_fill(sizes, weights, budget):
    """Real targets ``min(size, c * w * size)`` summing to ``budget``.

    Assumes every weight is > 0 and ``budget < sum(sizes)``.
    """
    full = set()
    while True:
        open_names = [n for n in sizes if n not in full]
        remaining = budget - sum(sizes[n] for n in full)
        c = remaining / sum(weights[n] * sizes[n] for n in open_names)
        newly_full = {n for n in open_names if c * weights[n] >= 1.0}
        if not newly_full:
            break
        full |= newly_full
    return {
        n: float(sizes[n]) if n in full else c * weights[n] * sizes[n]
        for n in sizes
    }


def _round(targets, sizes, budget):
    """Largest-remainder rounding of targets to ints summing to budget."""
    counts = {
        n: min(sizes[n], max(0, math.floor(t))) for n, t in targets.items()
    }
    order = sorted(
        targets, key=lambda n: math.floor(targets[n]) - targets[n]
    )
    missing = budget - sum(counts.values())
    while missing > 0:  # one pass in exact arithmetic; more absorb float error
        for name in order:
            if missing and counts[name] < sizes[name]:
                counts[name] += 1
                missing -= 1
    return counts


def split_budget(sizes, weights, budget):
    """Split ``budget`` ReLUs across layers in proportion to their weights.

    Args:
        sizes: ``{layer: number of ReLUs}`` (ints >= 0), in graph order.
        weights: ``{layer: weight >= 0}``; the kept fraction of a layer is
            proportional to its weight (capped at 1, see the module doc).
        budget: total ReLUs to keep, ``0 <= budget <= sum(sizes)``.

    Returns:
        ``{layer: count}`` in the order of ``sizes``, with
        ``0 <= count <= size`` and ``sum(counts) == budget``.
    """
    _check(sizes, weights, budget)
    sizes = {n: int(s) for n, s in sizes.items()}
    if budget == 0:
        return {n: 0 for n in sizes}
    positive = {n: s for n, s in sizes.items() if s and weights[n] > 0}
    capacity = sum(positive.values())
    if budget >= capacity:
        counts = dict(positive)
        rest = {n: s for n, s in sizes.items() if n not in positive}
        counts.update(uniform_split(rest, budget - capacity))
    else:
        targets = _water_fill(positive, weights, budget)
        counts = _round(targets, positive, budget)
    return {n: counts.get(n, 0) for n in sizes}


def uniform_split(sizes, budget):
    """The same kept fraction in every layer (``split_budget`` with equal
    weights): ``{layer: count}`` summing to ``budget`` exactly."""
    return split_budget(sizes, {n: 1.0 for n in sizes}, budget)
