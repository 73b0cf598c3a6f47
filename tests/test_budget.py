"""parse_budget: accepted forms and clear errors."""

import pytest

from keras_autorep import parse_budget

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


def test_percentage_needs_a_total():
    with pytest.raises(ValueError, match="total"):
        parse_budget("10%")


def test_budget_above_total_is_rejected():
    with pytest.raises(ValueError, match="exceeds"):
        parse_budget("2k", total=1000)
    with pytest.raises(ValueError, match="above 100%"):
        parse_budget("150%", total=1000)
