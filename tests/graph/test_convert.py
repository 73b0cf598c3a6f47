"""keras_autorep.graph: conversion (replace_relus), hardening (harden,
final_masks) and the GraphRewriter they share."""

import keras
import numpy as np
import pytest

import keras_autorep
from graph_models import (
    normalized_cnn,
    random_inputs,
    residual_model,
    sequential_cnn,
)
from keras_autorep import PartialReLU, ReLUSelector
from keras_autorep.graph import (
    GraphRewriter,
    check_rewritable,
    count_relus,
    final_masks,
    harden,
    replace_relus,
    selectors,
)
from keras_autorep.training.distribute import single_device_copy

pytestmark = pytest.mark.backend_agnostic


def randomise_masks(model, keep_probability, seed):
    rng = np.random.default_rng(seed)
    for site in selectors(model):
        site.mask.assign((rng.random(site.mask.shape) < keep_probability).astype("float32"))
        site.alpha.assign(rng.normal(size=site.alpha.shape).astype("float32"))


@pytest.mark.parametrize("build", [sequential_cnn, residual_model])
def test_replace_relus_keeps_the_function(build):
    model = build()
    x = random_inputs(model)
    converted = replace_relus(model)
    assert type(converted) is type(model)
    assert len(selectors(converted)) == (4 if build is sequential_cnn else 3)
    np.testing.assert_allclose(converted.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    assert count_relus(converted).total == count_relus(model).total
    for layer in converted.layers:
        assert not (getattr(layer, "activation", None) is keras.activations.relu)


@pytest.mark.parametrize("convert", [
    replace_relus,
    lambda model: harden(replace_relus(model)),
    lambda model: GraphRewriter(lambda layer: None, lambda layer: False)
    .rebuild(model),
    single_device_copy,
], ids=["replace_relus", "harden", "rewriter", "single_device_copy"])
def test_a_copied_model_keeps_its_adapted_normalization(convert):
    model = normalized_cnn()
    x = random_inputs(model) + 3.0
    np.testing.assert_allclose(
        convert(model).predict(x, verbose=0), model.predict(x, verbose=0),
        atol=1e-5)


def test_replace_relus_passes_selector_options_and_validates_them():
    converted = replace_relus(sequential_cnn(), granularity="channel", degree=1)
    assert all(s.granularity == "channel" and s.degree == 1 for s in selectors(converted))
    with pytest.raises(ValueError, match="granularity"):
        replace_relus(sequential_cnn(), granularity="nope")


def test_subclassed_models_get_a_clear_error():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2, activation="relu")

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(TypeError, match="subclassed"):
        replace_relus(net)
    with pytest.raises(TypeError, match="subclassed"):
        check_rewritable(net)
    with pytest.raises(TypeError, match="keras.Model"):
        check_rewritable(keras.layers.Dense(2))
    check_rewritable(sequential_cnn())  # no error
    check_rewritable(residual_model())


def test_nested_models_are_converted_inside():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="relu")])
    inputs = keras.Input((4,))
    outer = keras.Model(inputs, keras.layers.Dense(2)(inner(inputs)))
    converted = replace_relus(outer)
    assert isinstance(converted.layers[1], keras.Sequential)
    assert [s.name for s in selectors(converted)] == [
        f"{inner.layers[0].name}_relu"]
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(converted(x), outer(x), atol=1e-6)


@pytest.mark.parametrize("build", [sequential_cnn, residual_model])
@pytest.mark.parametrize("seed", range(3))
def test_harden_is_exact_and_within_budget(build, seed, tmp_path):
    model = replace_relus(build())
    rng = np.random.default_rng(seed)
    randomise_masks(model, keep_probability=rng.uniform(0.05, 0.95), seed=seed)
    x = random_inputs(model, seed=seed)
    kept = count_relus(model).kept
    total = count_relus(model).total

    hardened = harden(model)
    assert not selectors(hardened)
    assert count_relus(hardened).kept == kept
    np.testing.assert_allclose(hardened.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4)

    for budget in {0, int(rng.integers(0, kept + 1)), kept, total}:
        trimmed = harden(model, budget=budget)
        assert count_relus(trimmed).kept == min(budget, kept)
        if budget >= kept:
            np.testing.assert_allclose(trimmed.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4)

    path = tmp_path / "hardened.keras"
    hardened.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), hardened.predict(x, verbose=0), atol=1e-6)


def test_trimming_keeps_the_largest_indicators():
    model = replace_relus(sequential_cnn())
    randomise_masks(model, keep_probability=0.5, seed=3)
    budget = 40
    masks = final_masks(model, budget)
    kept_alpha, dropped_alpha = [], []
    for site in selectors(model):
        alpha = np.broadcast_to(keras.ops.convert_to_numpy(site.alpha), site.activation_shape).ravel()
        was_kept = np.broadcast_to(keras.ops.convert_to_numpy(site.mask), site.activation_shape).ravel() > 0.5
        kept_alpha.append(alpha[masks[site.name]])
        dropped_alpha.append(alpha[was_kept & ~masks[site.name]])
        assert not np.any(masks[site.name] & ~was_kept)  # never revives a ReLU
    assert sum(a.size for a in kept_alpha) == budget
    assert np.concatenate(kept_alpha).min() >= np.concatenate(dropped_alpha).max()


def test_harden_channel_granularity_and_percent_budget():
    model = replace_relus(sequential_cnn(), granularity="channel")
    randomise_masks(model, keep_probability=0.5, seed=4)
    hardened = harden(model, budget="5%")
    assert count_relus(hardened).kept <= count_relus(model).total * 5 // 100
    assert all(isinstance(layer, PartialReLU) for layer in hardened.layers if "relu" in layer.name)


def test_harden_rejects_bad_budget():
    model = replace_relus(sequential_cnn())
    with pytest.raises(ValueError, match="exceeds"):
        harden(model, budget=10**9)
    with pytest.raises(ValueError, match="abc"):
        harden(model, budget="abc")


def test_selector_sequential_by_hand():
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), ReLUSelector(), keras.layers.Flatten(), keras.layers.Dense(2)]
    )
    assert count_relus(model).total == 6 * 6 * 4
    assert isinstance(harden(model).layers[1], PartialReLU)


def test_package_exports_the_graph_functions():
    for name in ("replace_relus", "harden", "final_masks", "selectors",
                 "count_relus"):
        assert getattr(keras_autorep, name) is globals()[name], name


@pytest.mark.parametrize("build", [sequential_cnn, residual_model])
def test_graph_rewriter_swaps_layers_and_carries_weights(build):
    model = build()
    x = random_inputs(model)

    def is_target(layer):
        return isinstance(layer, keras.layers.BatchNormalization)

    def replace(layer):  # a BN becomes a copy followed by an Identity
        if not is_target(layer):
            return None
        return [rewriter.clone(layer),
                keras.layers.Identity(name=f"{layer.name}_after")]

    rewriter = GraphRewriter(replace, is_target)
    rebuilt = rewriter.rebuild(model)
    assert type(rebuilt) is type(model) and rebuilt is not model
    names = [layer.name for layer in rebuilt.layers]
    bn = [layer.name for layer in model.layers if is_target(layer)]
    assert bn and all(names.index(f"{n}_after") == names.index(n) + 1
                      for n in bn)
    for layer in model.layers:  # every original layer copied, not shared
        if isinstance(layer, keras.layers.InputLayer):
            continue
        copy = rebuilt.get_layer(layer.name)
        assert copy is not layer
        for a, b in zip(layer.get_weights(), copy.get_weights()):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-6)
