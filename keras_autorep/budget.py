"""ReLU budgets: parsing human-friendly budget strings."""

import math
import re

_SUFFIXES = {"": 1, "k": 1_000, "m": 1_000_000}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kKmM%]?)\s*$")


def parse_budget(value, total=None):
    """Turn a ReLU budget into a number of ReLU elements.

    Accepts a non-negative int, or a string: ``"12900"``, ``"12.9k"`` /
    ``"12.9K"`` (thousands), ``"1.2M"`` (millions), or a percentage such as
    ``"2.5%"`` of ``total`` (the model's ReLU count; required for
    percentages). Fractional results are rounded down, so the budget is never
    exceeded.

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
        budget = _parse_string(value, total)
    else:
        raise ValueError(
            f"invalid ReLU budget {value!r}: expected an int or a string "
            "like '12900', '12.9k', '1.2M' or '2.5%'"
        )
    if budget < 0:
        raise ValueError(f"invalid ReLU budget {value!r}: must be >= 0")
    if total is not None and budget > total:
        raise ValueError(
            f"ReLU budget {value!r} ({budget:,}) exceeds the model's "
            f"{total:,} ReLUs"
        )
    return budget


def _parse_string(text, total):
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(
            f"invalid ReLU budget {text!r}: expected a count like '12900', "
            "'12.9k', '1.2M' or a percentage like '2.5%'"
        )
    number, suffix = float(match.group(1)), match.group(2).lower()
    if suffix == "%":
        if total is None:
            raise ValueError(
                f"ReLU budget {text!r} is a percentage; the model's total "
                "ReLU count is needed to resolve it"
            )
        if number > 100:
            raise ValueError(f"invalid ReLU budget {text!r}: above 100%")
        return math.floor(total * number / 100 + 1e-9)
    return math.floor(number * _SUFFIXES[suffix] + 1e-9)
