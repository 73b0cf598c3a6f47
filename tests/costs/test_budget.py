"""Cost budgets: parsing the units, and a model's cost per kept count and
replacement form, against the calibrated prediction of each site's
workload."""

import pytest

from keras_autorep.budgets import check_budget_text, parse_budget, parse_cost
from keras_autorep.costs import NETWORKS, Network, Workload, predict
from keras_autorep.costs.budget import CostBudget, SiteCost
from keras_autorep.costs.sites import FORMS, site_workload
from keras_autorep.costs.workload import blocks, chunks, max_levels


@pytest.mark.parametrize("text, parsed", [
    ("4.5MB", ("bytes", 4.5e6)), ("800KB", ("bytes", 8e5)),
    ("3B", ("bytes", 3.0)), (" 2 GB ", ("bytes", 2e9)),
    ("250ms", ("latency_ms", 250.0)), ("1.5s", ("latency_ms", 1500.0)),
    ("1.2M", None), ("12.9k", None), ("2.5%", None), ("176.1x", None),
    ("12900", None)])
def test_cost_units_are_decimal_and_never_a_relu_count(text, parsed):
    assert parse_cost(text) == parsed
    assert check_budget_text(text) == text.strip()


@pytest.mark.parametrize("text", ["3Mb", "2TB", "5min", "1.2mB"])
def test_an_unknown_unit_is_a_one_line_error(text):
    with pytest.raises(ValueError, match=r"unknown unit .* a cost is in B, "
                       r"KB, MB, GB, ms, s \(decimal"):
        check_budget_text(text)


def test_a_cost_is_not_a_relu_count():
    with pytest.raises(ValueError, match="'3.7MB' is a cost, not a ReLU "
                       "count: it needs a protocol"):
        parse_budget("3.7MB", total=100_000)


def test_networks_are_named_or_stated():
    assert Network.parse("lan") == NETWORKS["lan"] == Network(1.0, 1000.0)
    assert Network.parse("wan") == Network(50.0, 100.0)
    assert Network.parse("20,300") == Network(20.0, 300.0)
    for text in ("moon", "1,0", "1", "-1,10", "inf,10"):
        with pytest.raises(ValueError, match="invalid network"):
            Network.parse(text)


@pytest.mark.parametrize("protocol", ["crypten", "spu-semi2k",
                                      "spu-cheetah"])
@pytest.mark.parametrize("metric", ["bytes", "latency_ms"])
def test_site_cost_is_the_prediction_of_the_site_workload(protocol, metric):
    network = NETWORKS["wan"]

    def value(workload):
        prediction = predict(workload, protocol)
        return (prediction.bytes if metric == "bytes"
                else prediction.latency_ms(network))

    # A small site called twice, and a large one whose kept and removed
    # elements cross CHEETAH's chunk and direct-product sizes.
    for total, channels, calls, activation in (
            (2 * 4 * 4 * 8, 8, 2, "relu"), (40_000, 16, 1, "silu")):
        site = SiteCost.priced(total, channels, calls, value,
                               activation=activation)
        for form in FORMS:
            for kept in sorted({0, calls, 10 * calls, 2050, 9000, 23_001,
                                total // 2, total - 16_385, total - calls,
                                total}):
                if kept % calls or not 0 <= kept <= total:
                    continue
                expected = value(site_workload(total, kept, form, channels,
                                               calls, activation))
                assert site.cost(kept, form) == pytest.approx(expected), (
                    form, kept, total)


def test_model_cost_floor_and_all_relu():
    sites = {"a": (256, 4, 1, False, "relu"), "b": (64, 16, 1, True, "relu")}
    fixed = Workload(linear_out=1000, linear_in=5000, linear_macs=9000,
                     linear_nodes=2)
    budget = CostBudget.for_sites(3e5, "bytes", "spu-cheetah",
                                  Network(), fixed, sites, "0.3MB")
    assert budget.fixed == pytest.approx(predict(fixed, "spu-cheetah").bytes)
    relu = budget.all_relu()
    assert relu == pytest.approx(
        predict(fixed + site_workload(256, 256, "poly2", 4)
                + site_workload(64, 64, "poly2", 16), "spu-cheetah").bytes)
    # Under CHEETAH a degree-2 element costs more than a ReLU: emptying a
    # site with poly2 costs more than keeping it, with identity nothing.
    empty = {"a": 0, "b": 0}
    assert budget.cost(empty, "poly2") > relu > budget.cost(empty, "poly1")
    assert budget.cost(empty, "identity") == budget.floor() == budget.fixed
    # b's line folds into the layer feeding it: free, as an identity.
    assert budget.sites["b"].cost(0, "poly1") == 0.0
    assert budget.sites["a"].cost(0, "poly1") == pytest.approx(
        predict(site_workload(256, 0, "poly1", 4), "spu-cheetah").bytes)
    assert budget.cost({"a": 10, "b": 64}, {"a": "poly1", "b": "poly2"}) \
        == pytest.approx(budget.fixed + budget.sites["a"].cost(10, "poly1")
                         + budget.sites["b"].cost(64, "poly2"))
    assert str(budget) == "0.30 MB under spu-cheetah"


def test_cheetah_chunks_blocks_and_max_trees():
    assert [chunks(n) for n in (0, 1, 2048, 2049, 10**6)] == [0, 1, 1, 2, 2]
    assert [blocks(n) for n in (1, 8192, 8193, 16384, 16385, 40000)] == [
        1, 1, 2, 2, 3, 6]
    assert max_levels(4, 10) == [20, 10]
    assert max_levels(9, 10) == [40, 20, 10, 10]
    assert sum(max_levels(9, 10)) == 8 * 10


def test_cheetah_prices_its_ot_buffer_refills_amortised():
    """CHEETAH refills an OT buffer when an inference empties it
    (``benchmarks/cheetah_refills.py``); a prediction adds the refills its
    comparisons and sigmoids consume, amortised; other protocols none."""
    from keras_autorep.costs.model import amortised_refills, calibration

    protocols = calibration()["protocols"]
    refills = protocols["spu-cheetah"]["refills"]
    assert refills["actions"] == 1281 and 2e5 < refills["bytes"] < 5e5
    assert "cheetah_refills.py" in refills["provenance"]["command"]
    rates = refills["per_element"]
    assert rates["sigmoids"] > 10 * rates["comparisons"] > 0
    assert rates["max_comparisons"] == rates["comparisons"]
    sigmoids = {"sigmoids": round(100 / rates["sigmoids"])}
    assert amortised_refills(protocols["spu-cheetah"], sigmoids) == \
        pytest.approx(100, rel=1e-3)
    for protocol in ("crypten", "spu-semi2k"):
        assert amortised_refills(protocols[protocol], sigmoids) == 0


def test_one_inference_pays_whole_refills():
    """A measured image pays the floor or the ceiling of the amortised
    refills; ``nearest_paid`` picks the one a measurement shows."""
    from keras_autorep.costs.model import Prediction, calibration

    cost = calibration()["protocols"]["spu-cheetah"]["refills"]
    amortised = Prediction("spu-cheetah", 1e6, 5000.0, 1.0, 0.0, 2.4)
    floor, ceiling = amortised.paying_whole_refills()
    assert (floor.refills, ceiling.refills) == (2.0, 3.0)
    assert floor.rounds == pytest.approx(5000 - 0.4 * cost["actions"])
    assert ceiling.bytes == pytest.approx(1e6 + 0.6 * cost["bytes"])
    assert amortised.nearest_paid(ceiling.rounds + 10) == ceiling
    assert amortised.nearest_paid(floor.rounds - 10) == floor
    none = Prediction("crypten", 1e6, 50.0, 1.0, 0.0)
    assert none.paying_whole_refills() == [none]
