"""keras_autorep.graph.sites (what a site is) and
keras_autorep.graph.counting (how many ReLUs a model computes)."""

import dataclasses

import keras
import numpy as np
import pytest

import keras_autorep
from graph_models import sequential_cnn
from keras_autorep import (
    PartialReLU,
    PolynomialActivation,
    ReLUSelector,
    SoftReLUMask,
)
from keras_autorep.graph import (
    LiveReLUCount,
    ReLUCount,
    SiteCount,
    count_relus,
    harden,
    land_masks,
    replace_relus,
    selectors,
    site_of,
    site_sizes,
    sites,
    top_masks,
)
from keras_autorep.graph.sites import (
    COMPARISON,
    FUSED_RELU,
    PARTIAL_RELU,
    POLYNOMIAL,
    SELECTOR,
    SOFT_MASK,
    STANDALONE_RELU,
    iter_layers,
)

pytestmark = pytest.mark.backend_agnostic

# ------------------------------------------------------------------ sites


@pytest.mark.parametrize(
    "layer_fn, kind, label, fused",
    [
        (lambda: keras.layers.ReLU(), STANDALONE_RELU, "ReLU", False),
        (lambda: keras.layers.Activation("relu"), STANDALONE_RELU,
         "Activation(relu)", False),
        (lambda: keras.layers.Dense(3, activation="relu"), FUSED_RELU,
         "fused relu", True),
        (lambda: keras.layers.Conv2D(3, 1, activation="relu"), FUSED_RELU,
         "fused relu", True),
        (lambda: ReLUSelector(), SELECTOR, "ReLUSelector", False),
        (lambda: SoftReLUMask(), SOFT_MASK, "SoftReLUMask", False),
        (lambda: PartialReLU(num_kept=0), PARTIAL_RELU, "PartialReLU", False),
        (lambda: PolynomialActivation(), POLYNOMIAL, "PolynomialActivation",
         False),
        (lambda: keras.layers.ReLU(max_value=6.0), COMPARISON,
         "ReLU (clipped/leaky)", False),
        (lambda: keras.layers.LeakyReLU(), COMPARISON, "LeakyReLU", False),
        (lambda: keras.layers.MaxPooling2D(), COMPARISON, "MaxPooling2D",
         False),
        (lambda: keras.layers.Dense(3, activation="relu6"), COMPARISON,
         "activation relu6", True),
    ],
)
def test_site_of_every_kind(layer_fn, kind, label, fused):
    layer = layer_fn()
    site = site_of(layer)
    assert site.layer is layer
    assert (site.kind, site.label, site.fused) == (kind, label, fused)
    assert site.is_relu == (kind != COMPARISON)
    assert site.convertible == (kind in (STANDALONE_RELU, FUSED_RELU))


@pytest.mark.parametrize("layer", [
    keras.layers.Dense(3), keras.layers.Conv2D(3, 1, activation="tanh"),
    keras.layers.Activation("softmax"), keras.layers.Add(),
    keras.layers.GlobalAveragePooling2D(), keras.layers.BatchNormalization(),
], ids=lambda layer: type(layer).__name__)
def test_other_layers_are_no_site(layer):
    assert site_of(layer) is None


def test_sites_in_graph_order_and_nested_models():
    inner = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(4, activation="relu",
                                                 name="inner_dense")],
                             name="inner")
    inputs = keras.Input((4,))
    h = keras.layers.ReLU(name="first")(inputs)
    h = inner(h)
    h = ReLUSelector(name="selector")(h)
    h = keras.layers.LeakyReLU(name="leaky")(h)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(h))
    assert "inner_dense" in [layer.name for layer in iter_layers(model)]
    assert [s.layer.name for s in sites(model)] == [
        "first", "inner_dense", "selector", "leaky"]
    assert [s.kind for s in sites(model)] == [
        STANDALONE_RELU, FUSED_RELU, SELECTOR, COMPARISON]
    assert [s.layer.name for s in sites(model, (FUSED_RELU, SELECTOR))] == [
        "inner_dense", "selector"]
    assert [layer.name for layer in selectors(model)] == ["selector"]
    count = count_relus(model)
    assert count.total == count.kept == 12
    assert [row.layer for row in count.other] == ["leaky"]


def test_kept_per_call_of_the_keras_autorep_sites():
    selector = ReLUSelector(granularity="channel")
    selector.build((None, 2, 2, 3))
    selector.mask.assign(np.array([1.0, 0.0, 1.0], "float32"))
    soft = SoftReLUMask(threshold=0.5)
    soft.build((None, 2, 2, 3))
    soft.mask.assign(np.full((2, 2, 3), 0.25, "float32"))
    partial = PartialReLU(num_kept=5)
    partial.build((None, 2, 2, 3))
    polynomial = PolynomialActivation()
    polynomial.build((None, 2, 2, 3))
    assert site_of(selector).kept_per_call() == 8
    assert site_of(soft).kept_per_call() == 0
    assert site_of(partial).kept_per_call() == 5
    assert site_of(polynomial).kept_per_call() == 0
    assert site_of(keras.layers.ReLU()).kept_per_call() is None


# ------------------------------------------------------------------ counting


def test_count_relus_table_on_sequential():
    count = count_relus(sequential_cnn())
    kinds = {row.layer: row.kind for row in count.rows}
    assert sorted(kinds.values()) == ["Activation(relu)", "ReLU", "fused relu", "fused relu"]
    assert count.total == count.kept == 8 * 8 * 6 * 2 + 4 * 4 * 4 + 12
    assert [row.kind for row in count.other] == ["MaxPooling2D"]
    assert "TOTAL" in count.table() and "MaxPooling2D" in count.table()
    assert [row.fused for row in count.rows] == [True, False, False, True]
    assert all(isinstance(row, SiteCount) and row.calls == 1
               for row in count.rows)
    # the 2x2 max-pool of an 8x8x6 map: 96 outputs, 3 comparisons each
    assert count.totals() == {"relu_total": count.total,
                              "relu_kept": count.kept, "polynomial": 0,
                              "max_comparisons": 288,
                              "other_comparisons": 0, "smooth_elements": 0,
                              "kept_by_activation": {"relu": count.kept}}


def test_other_comparison_activations_are_reported_not_counted():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, activation="relu6"),
            keras.layers.LeakyReLU(),
            keras.layers.ReLU(max_value=6.0),
            keras.layers.Dense(2, activation="relu"),
        ]
    )
    count = count_relus(model)
    assert count.total == 2
    assert len(count.other) == 3


def test_every_relu_is_counted_whatever_its_name():
    # "Uncounted" ReLUs are gone: a ReLU named like the old stem ReLUs
    # (``*_uncounted``) is counted, and converted, like any other.
    inputs = keras.Input((4, 4, 2))
    h = keras.layers.ReLU(name="stem_relu_uncounted")(inputs)
    h = keras.layers.ReLU(name="body_relu")(h)
    model = keras.Model(inputs, h)
    count = count_relus(model)
    assert isinstance(count, ReLUCount)
    assert count.total == count.kept == 64
    assert [(row.layer, row.total, row.kept, row.fused) for row in count.rows] \
        == [("stem_relu_uncounted", 32, 32, False),
            ("body_relu", 32, 32, False)]
    assert not hasattr(count, "uncounted")
    assert "not counted" not in count.convention
    assert "(uncounted)" not in count.table()
    assert "uncounted ReLUs" not in count.table()
    assert set(count.to_dict()) == {"total", "kept", "polynomial",
                                    "max_comparisons", "other_comparisons",
                                    "smooth_elements", "kept_by_activation",
                                    "convention", "layers", "other"}
    assert all("counted" not in row and row["fused"] is False
               for row in count.to_dict()["layers"])
    converted = replace_relus(model)
    assert [type(layer).__name__ for layer in converted.layers[1:]] == [
        "ReLUSelector", "ReLUSelector"]
    assert count_relus(converted).total == 64


def test_counts_follow_the_masks_and_every_call():
    model = replace_relus(sequential_cnn())
    first = selectors(model)[0]
    mask = np.zeros(first.mask.shape, "float32")
    mask[..., 0] = 1.0  # keep one channel of 6
    first.mask.assign(mask)
    count = count_relus(model)
    assert count.kept == count.total - 8 * 8 * 5
    assert count.polynomial == 8 * 8 * 5
    assert count.totals()["polynomial"] == 8 * 8 * 5
    shared = keras.layers.ReLU(name="shared")
    inputs = keras.Input((3,))
    twice = keras.Model(inputs, shared(shared(inputs)))
    (row,) = count_relus(twice).rows
    assert (row.total, row.calls) == (6, 2)


def test_live_count_matches_count_relus_and_splits_off_fixed_relus():
    model = replace_relus(sequential_cnn())
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.ReLU(name="plain")(inputs)  # no selector here
    mixed = keras.Model(inputs, model(h))
    live = LiveReLUCount(mixed)
    assert live.total == count_relus(mixed).total
    assert live.fixed == 8 * 8 * 3
    assert float(keras.ops.convert_to_numpy(live())) == count_relus(mixed).kept
    first = selectors(model)[0]
    first.mask.assign(np.zeros(first.mask.shape, "float32"))
    assert float(keras.ops.convert_to_numpy(live())) == count_relus(mixed).kept


def test_live_count_pairs_sites_and_rows_by_layer_name():
    """Each selector gets its own row's calls, whatever the rows' order,
    a traced row between them or a site without a row (one the model never
    calls, which counts nothing)."""
    inputs = keras.Input((4, 4, 2))
    shared = ReLUSelector(name="shared")
    h = shared(shared(keras.layers.Conv2D(2, 1)(inputs)))
    h = ReLUSelector(name="once")(keras.layers.Conv2D(3, 1)(h))
    model = keras.Model(inputs, h)
    count = count_relus(model)

    def pairs(count):
        live = LiveReLUCount(model, count)
        return [(layer.name, calls) for layer, calls in live.sites], live

    assert pairs(count)[0] == [("shared", 2), ("once", 1)]
    first, second = count.rows
    traced = SiteCount("custom", "traced relu (layer)", (4, 4, 2), 32, 32)
    reordered = dataclasses.replace(count, rows=(second, traced, first),
                                    total=count.total + 32,
                                    kept=count.kept + 32)
    found, live = pairs(reordered)
    assert found == [("shared", 2), ("once", 1)] and live.fixed == 32
    assert float(keras.ops.convert_to_numpy(live())) == count.kept + 32
    uncalled = dataclasses.replace(count, rows=(second,),
                                   total=second.total, kept=second.kept)
    assert pairs(uncalled)[0] == [("once", 1)]


def test_harden_counts_the_model_once_and_masks_take_the_count(relu_counts):
    student = replace_relus(sequential_cnn())
    hardened = harden(student, "30%")  # trims: budget, land, top masks
    assert relu_counts == [student]
    assert count_relus(hardened).kept <= 0.3 * count_relus(student).total
    count = count_relus(student)
    relu_counts.clear()
    assert site_sizes(student, count=count)
    scores = {name: np.ones(mask.shape) for name, mask in
              land_masks(student, "30%", count=count).items()}
    top_masks(student, scores, budget=100, count=count)
    harden(student, "30%", count=count)
    assert relu_counts == []


def test_count_relus_rejects_what_it_cannot_count():
    with pytest.raises(TypeError, match="keras.Model"):
        count_relus(keras.layers.Dense(2))
    unbuilt = keras.Sequential([keras.layers.Dense(2, activation="relu")])
    with pytest.raises(ValueError, match="built"):
        count_relus(unbuilt)


def test_package_exports_the_counting_api():
    assert keras_autorep.count_relus is count_relus
    assert keras_autorep.ReLUCount is ReLUCount
