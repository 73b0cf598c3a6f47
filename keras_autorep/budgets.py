"""Budgets as pure functions: parsing budget strings, splitting a ReLU
budget across layers.

A budget is a ReLU count (``"12900"``, ``"12.9k"``, ``"1.2M"``, ``"2.5%"``
of the model's, a reduction factor ``"176.1x"``) or a cost under a named
PI protocol (``parse_cost``): bytes of one inference, both directions
(``"4.5MB"``, ``"800KB"``; decimal units, 1 MB = 10^6 B), or a latency
(``"250ms"``, ``"1.5s"``). ``"1.2M"`` is always 1.2 million ReLUs: bytes
end in ``B``.

Splitting: every split returns whole per-layer counts that sum to the budget
exactly and never exceed a layer's size. The shared rule is *proportional
water-filling*: layer ``l`` (``size_l`` ReLUs, weight ``w_l >= 0``) keeps
the fraction ``f_l = min(1, c * w_l)`` of its ReLUs, with ``c`` chosen so
that ``sum_l f_l * size_l = budget``. So a layer with twice the weight keeps
twice the fraction until it is full, and full layers pass their share on to
the others. Layers of weight 0 keep nothing unless every positive-weight
layer is full; the rest of the budget is then spread uniformly over them.
The real-valued targets are rounded by largest remainder.

>>> parse_budget("12.9k")
12900
>>> split_budget({"a": 100, "b": 100}, {"a": 1.0, "b": 3.0}, 80)
{'a': 20, 'b': 60}
"""

import math
import re

_SUFFIXES = {"": 1, "k": 1_000, "m": 1_000_000}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kKmM%xX]?)\s*$")
_RELATIVE = ("%", "x")  # suffixes that need the model's total
_COST_PATTERN = re.compile(
    r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]+)\s*$")
# Cost units: (metric, factor to bytes or to milliseconds).
COST_UNITS = {
    "B": ("bytes", 1.0), "KB": ("bytes", 1e3), "MB": ("bytes", 1e6),
    "GB": ("bytes", 1e9), "ms": ("latency_ms", 1.0), "s": ("latency_ms", 1e3),
}


def parse_budget(value, total=None):
    """Turn a ReLU budget into a number of ReLU elements.

    Accepts a non-negative int, or a string: ``"12900"``, ``"12.9k"`` /
    ``"12.9K"`` (thousands), ``"1.2M"`` (millions), a percentage such as
    ``"2.5%"`` of ``total`` (the model's ReLU count), or a reduction factor
    such as ``"176.1x"``: ``total / 176.1`` (AutoReP's ImageNet budget; a
    factor must be >= 1). Percentages and factors need ``total``.
    Fractional results are rounded down, so the budget is never exceeded.

    Args:
        value: the budget.
        total: the model's total ReLU count, to resolve percentages and to
            reject budgets larger than the model.

    Returns:
        The budget as an ``int``.

    Raises:
        ValueError: naming the bad value, for anything else.

    >>> parse_budget("12.9k")
    12900
    >>> parse_budget("10%", total=491520)
    49152
    >>> parse_budget("176.1x", total=491520)
    2791
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid ReLU budget {value!r}")
    if isinstance(value, int):
        budget = value
    elif isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(
                f"invalid ReLU budget {value!r}: use a whole number of ReLUs"
            )
        budget = int(value)
    elif isinstance(value, str):
        if parse_cost(value) is not None:
            raise ValueError(
                f"budget {value!r} is a cost, not a ReLU count: it needs a "
                "protocol to price the model (--protocol; in Python "
                "keras_autorep.pi.cost_budget)")
        budget = _parse_string(value, total)
    else:
        raise ValueError(
            f"invalid ReLU budget {value!r}: expected an int or a string "
            "like '12900', '12.9k', '1.2M', '2.5%' or '176.1x'"
        )
    if budget < 0:
        raise ValueError(f"invalid ReLU budget {value!r}: must be >= 0")
    if total is not None and budget > total:
        raise ValueError(
            f"ReLU budget {value!r} ({budget:,}) exceeds the model's "
            f"{total:,} ReLUs"
        )
    return budget


def _number_and_suffix(text):
    """``(number, suffix)`` of a budget string; ``ValueError`` if malformed."""
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(
            f"invalid ReLU budget {text!r}: expected a count like '12900', "
            "'12.9k', '1.2M', a percentage like '2.5%' or a reduction "
            "factor like '176.1x'"
        )
    number, suffix = float(match.group(1)), match.group(2).lower()
    if suffix == "%" and number > 100:
        raise ValueError(f"invalid ReLU budget {text!r}: above 100%")
    if suffix == "x" and number < 1:
        raise ValueError(
            f"invalid ReLU budget {text!r}: a reduction factor must be >= 1")
    return number, suffix


def parse_cost(text):
    """``(metric, amount)`` of a cost budget string: ``("bytes", 4.5e6)``
    for ``"4.5MB"``, ``("latency_ms", 250.0)`` for ``"250ms"``; ``None``
    for a ReLU budget string (``"12.9k"``, ``"1.2M"``, ``"2.5%"``); a
    ``ValueError`` naming the unit for any other letters."""
    if not isinstance(text, str):
        return None
    match = _COST_PATTERN.match(text)
    if not match or match.group(2).lower() in _SUFFIXES or match.group(
            2).lower() == "x":
        return None
    unit = match.group(2)
    if unit not in COST_UNITS:
        raise ValueError(
            f"invalid budget {text!r}: unknown unit {unit!r}; a cost is in "
            f"{', '.join(COST_UNITS)} (decimal: 1 MB = 10^6 bytes; bytes are "
            "a capital B), a ReLU count like 12900, 12.9k or 1.2M")
    metric, factor = COST_UNITS[unit]
    return metric, float(match.group(1)) * factor


def check_budget_text(text):
    """``text`` stripped, if it is a well-formed budget (a count, a
    percentage up to 100 %, a reduction factor of at least 1, or a cost:
    ``parse_cost``); ``ValueError`` naming the problem otherwise.
    Resolving it needs the model (``parse_budget``, or a cost model)."""
    if parse_cost(text) is None:
        _number_and_suffix(text)
    return text.strip()


def _parse_string(text, total):
    number, suffix = _number_and_suffix(text)
    if suffix in _RELATIVE and total is None:
        raise ValueError(
            f"ReLU budget {text!r} is relative to the model; the model's "
            "total ReLU count is needed to resolve it"
        )
    if suffix == "%":
        return math.floor(total * number / 100 + 1e-9)
    if suffix == "x":
        return math.floor(total / number + 1e-9)
    return math.floor(number * _SUFFIXES[suffix] + 1e-9)


def _check_split(sizes, weights, budget):
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
    _check_split(sizes, weights, budget)
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
