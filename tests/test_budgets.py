"""keras_autorep.budgets: parsing budgets (accepted forms, clear errors)
and splitting them across layers."""

import numpy as np
import pytest

from keras_autorep import parse_budget
from keras_autorep.budgets import parse_budget as budgets_parse_budget
from keras_autorep.budgets import check_budget_text, split_budget, uniform_split

pytestmark = pytest.mark.backend_agnostic


@pytest.mark.parametrize(
    "value,total,expected",
    [
        (12900, None, 12900),
        ("12900", None, 12900),
        ("12.9k", None, 12900),
        ("12.9K", None, 12900),
        ("1.2M", None, 1_200_000),
        (" 86k ", None, 86000),
        ("0", None, 0),
        (0, None, 0),
        ("2.5%", 491520, 12288),
        ("100%", 1000, 1000),
        ("0.1%", 1999, 1),  # rounded down, never above the budget
    ],
)
def test_good_budgets(value, total, expected):
    assert parse_budget(value, total=total) == expected


@pytest.mark.parametrize(
    "value", ["abc", "-5", "nan", "12.9q", "", "inf", "1e3", "5%%", "k", -5, 1.5, True, None, [1]]
)
def test_bad_budgets_name_the_value(value):
    with pytest.raises(ValueError) as info:
        parse_budget(value, total=1000)
    assert repr(value) in str(info.value)


def test_package_exports_the_budgets_parser():
    assert parse_budget is budgets_parse_budget


def test_percentage_needs_a_total():
    with pytest.raises(ValueError, match="total"):
        parse_budget("10%")


def test_reduction_factor_divides_the_total():
    assert parse_budget("176.1x", total=491520) == 2791  # floor(2791.14)
    assert parse_budget("1x", total=1000) == 1000
    assert parse_budget(" 2X ", total=1001) == 500
    assert check_budget_text("176.1x") == "176.1x"
    with pytest.raises(ValueError, match="total"):
        parse_budget("176.1x")
    with pytest.raises(ValueError, match="factor must be >= 1"):
        parse_budget("0.5x", total=1000)
    with pytest.raises(ValueError, match="176.1x"):
        parse_budget("x", total=1000)


def test_budget_above_total_is_rejected():
    with pytest.raises(ValueError, match="exceeds"):
        parse_budget("2k", total=1000)
    with pytest.raises(ValueError, match="above 100%"):
        parse_budget("150%", total=1000)


# ------------------------------------------------------------------ splits


def random_case(rng):
    n = int(rng.integers(1, 9))
    names = [f"layer{i}" for i in range(n)]
    sizes = dict(zip(names, rng.integers(0, 10_000, n).tolist()))
    weights = dict(zip(names, (rng.random(n) * (rng.random(n) > 0.2))))
    budget = int(rng.integers(0, sum(sizes.values()) + 1))
    return sizes, weights, budget


def test_split_budget_is_exact_capped_and_proportional():
    rng = np.random.default_rng(0)
    for case in range(500):
        sizes, weights, budget = random_case(rng)
        counts = split_budget(sizes, weights, budget)
        assert list(counts) == list(sizes)
        assert sum(counts.values()) == budget, case
        assert all(0 <= counts[k] <= sizes[k] for k in sizes), case
        live = [k for k in sizes if sizes[k] and weights[k] > 0]
        if budget <= sum(sizes[k] for k in live):
            assert all(counts[k] == 0 for k in sizes if k not in live), case
        # fraction = min(1, c * w): proportional to the weight until full
        full = [k for k in live if counts[k] == sizes[k]]
        open_ = [k for k in live if k not in full and sizes[k] > 50]
        for a in open_:
            for b in open_:
                target = weights[a] / weights[b] * counts[b] / sizes[b]
                assert abs(counts[a] / sizes[a] - target) <= (
                    1 / sizes[a] + weights[a] / weights[b] / sizes[b]
                ), case
        uniform = uniform_split(sizes, budget)
        assert sum(uniform.values()) == budget
        fraction = budget / max(1, sum(sizes.values()))
        assert all(abs(uniform[k] - fraction * sizes[k]) < 1 for k in sizes)


def test_split_budget_rejects_bad_input():
    with pytest.raises(ValueError, match="budget"):
        split_budget({"a": 3}, {"a": 1.0}, 4)
    with pytest.raises(ValueError, match="weight"):
        split_budget({"a": 3}, {"a": -1.0}, 1)
    with pytest.raises(ValueError, match="same layers"):
        split_budget({"a": 3}, {"b": 1.0}, 1)
    assert split_budget({"a": 10, "b": 10}, {"a": 1.0, "b": 0.0}, 15) == {
        "a": 10, "b": 5}
