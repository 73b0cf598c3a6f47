"""Replacement forms of removed positions: poly2, poly1, identity and the
learned one, in the selector (forward, gradients, .keras round trip) and
in the hardened layer (an identity computes nothing)."""

import keras
import numpy as np
import pytest

from keras_autorep import harden, replace_relus
from keras_autorep.costs import FORMS
from keras_autorep.graph import selectors, site_forms
from keras_autorep.layers import PartialReLU, ReLUSelector
from backend_utils import gradient_wrt
from layer_contract import check_layer_contract

pytestmark = pytest.mark.backend_agnostic


def all_removed(layer):
    layer.mask.assign(np.zeros(layer.mask.shape, "float32"))
    layer.alpha.assign(-np.ones(layer.alpha.shape, "float32"))


def expected(form, x, layer):
    c = keras.ops.convert_to_numpy(layer.form_coefficients(form))
    if form == "identity":
        return x
    return sum(row * x ** power for power, row in enumerate(c))


@pytest.mark.parametrize("form", FORMS)
def test_each_form_computes_itself_and_round_trips(form, tmp_path):
    model, reloaded, x = check_layer_contract(
        lambda: ReLUSelector(replacement=form, refit_steps=0), (6, 6, 3),
        tmp_path, prepare=all_removed)
    layer = model.layers[-1]
    assert (layer.replacement, layer.current_form()) == (form, form)
    inputs = keras.ops.convert_to_numpy(model.layers[0](x))
    outputs = model.predict(x, verbose=0)
    np.testing.assert_allclose(outputs, expected(form, inputs, layer),
                               rtol=1e-5, atol=1e-5)
    assert reloaded.layers[-1].replacement == form


@pytest.mark.parametrize("form", [*FORMS, "auto"])
def test_each_form_has_gradients(form):
    layer = ReLUSelector(replacement=form, refit_steps=0)
    x = keras.ops.convert_to_tensor(
        np.random.default_rng(0).normal(size=(4, 5, 5, 3)).astype("float32"))
    layer(x)
    all_removed(layer)
    names = {v.path.split("/", 1)[1]: v for v in layer.trainable_variables}
    # An identity has no coefficient to train; lines and quadratics do; of
    # a learned form's branches only the one it computes now (degree 2 at
    # the start: the line waits, refitted). The form is chosen by
    # FormSearch, not by gradient.
    assert "form_logits" not in names
    expected = {"poly2": {"polynomial/learned_coefficients"},
                "poly1": {"polynomial/learned_coefficients"},
                "identity": set(),
                "auto": {"polynomial/learned_coefficients"}}[form]
    moving = set()
    for name, variable in names.items():
        grad = gradient_wrt(variable, lambda: keras.ops.sum(
            layer(x, training=True) ** 2))
        assert np.all(np.isfinite(grad)), name
        if np.any(grad != 0):
            moving.add(name)
    assert moving == {"alpha", *expected}


def test_a_learned_form_follows_its_largest_logit(tmp_path):
    model, reloaded, x = check_layer_contract(
        lambda: ReLUSelector(replacement="auto", refit_steps=0), (6, 6, 3),
        tmp_path, prepare=all_removed)
    layer = model.layers[-1]
    assert layer.current_form() == "poly2"  # where AutoReP starts
    inputs = keras.ops.convert_to_numpy(model.layers[0](x))
    for index, form in enumerate(FORMS):
        logits = np.zeros(len(FORMS), "float32")
        logits[index] = 1.0
        layer.form_logits.assign(logits)
        assert layer.current_form() == form
        weights = {f: float(keras.ops.convert_to_numpy(w))
                   for f, w in layer.form_weights().items()}
        assert weights == {f: float(f == form) for f in FORMS}
        np.testing.assert_allclose(model.predict(x, verbose=0),
                                   expected(form, inputs, layer),
                                   rtol=1e-5, atol=1e-5)
    hardened = harden(model)
    assert site_forms(hardened) == {layer.name: "identity"}


def test_per_site_forms_and_a_hardened_identity_that_computes_nothing():
    teacher = keras.Sequential([
        keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 3, padding="same"),
        keras.layers.ReLU(name="first"),
        keras.layers.Conv2D(4, 3, padding="same"),
        keras.layers.ReLU(name="second"), keras.layers.Flatten(),
        keras.layers.Dense(2)])
    student = replace_relus(teacher, replacement={"second": "identity"})
    assert [s.replacement for s in selectors(student)] == ["poly2",
                                                           "identity"]
    with pytest.raises(ValueError, match=r"names no site \['third'\]"):
        replace_relus(teacher, replacement={"third": "poly1"})
    layer = PartialReLU(3, form="identity", kept_indices=[0, 5, 9])
    x = np.random.default_rng(1).normal(size=(2, 3, 3, 2)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x)).reshape(2, -1)
    flat = x.reshape(2, -1)
    kept = np.zeros(18, bool)
    kept[[0, 5, 9]] = True
    np.testing.assert_array_equal(y[:, kept], np.maximum(flat[:, kept], 0))
    np.testing.assert_array_equal(y[:, ~kept], flat[:, ~kept])
    config = layer.get_config()
    assert (config["form"], config["degree"]) == ("identity", 1)
    assert PartialReLU.from_config(config).form == "identity"
    # A configuration of an earlier version (no form) reads its degree.
    assert PartialReLU(0, degree=2).form == "poly2"
