"""PolynomialActivation: DaPa refits from running statistics, then free
training, on every backend; serialisation, and files of earlier versions."""

from pathlib import Path

import keras
import numpy as np
import pytest

from keras_autorep import PolynomialActivation
from keras_autorep.dapa import dapa_coefficients, evaluate_polynomial
from layer_contract import check_layer_contract

pytestmark = pytest.mark.backend_agnostic

DATA = Path(__file__).resolve().parent / "data"


def numpy(value):
    return keras.ops.convert_to_numpy(value)


def far_from_standard_normal(layer, bias=3.0):
    """``layer`` after a conv whose outputs have mean ``bias``, std ~1."""
    return keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, padding="same",
                            bias_initializer=keras.initializers.Constant(bias)),
        layer,
    ])


def test_polynomial_keeps_the_layer_contract(tmp_path):
    model, reloaded, x = check_layer_contract(
        lambda: PolynomialActivation(refit_every=5, refit_steps=50),
        (4, 4, 3), tmp_path,
    )
    layer = model.layers[-1]
    # The training call refitted the coefficients: the reloaded model
    # computes with the refitted ones.
    assert float(keras.ops.convert_to_numpy(layer.steps)) == 1.0
    for name in ("coefficients", "learned", "fitted", "moving_mean",
                 "moving_std", "steps"):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(getattr(reloaded.layers[-1], name)),
            keras.ops.convert_to_numpy(getattr(layer, name)),
        )


def test_polynomial_refits_to_running_statistics_then_trains_freely():
    layer = PolynomialActivation(refit_every=2, refit_steps=4, momentum=0.5)
    x = np.random.default_rng(2).normal(2.0, 3.0, size=(64, 8, 8, 3)).astype("float32")
    layer(x, training=True)  # step 0: stats := batch stats, refit
    mean = keras.ops.convert_to_numpy(layer.moving_mean)
    std = keras.ops.convert_to_numpy(layer.moving_std)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2)), atol=1e-4)
    np.testing.assert_allclose(std, np.sqrt(x.var(axis=(0, 1, 2)) + 1e-3), rtol=1e-4)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.coefficients),
        keras.ops.convert_to_numpy(dapa_coefficients(mean, std)),
        rtol=1e-5,
    )
    for _ in range(4):  # steps 1..4; the last refit happens at step 2
        layer(x, training=True)
    frozen = np.full(layer.coefficients.shape, 0.25, "float32")
    layer.assign_coefficients(frozen)  # as if backprop had changed them
    layer(x, training=True)  # step 5 > refit_steps: no refit
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.coefficients), frozen)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x)), evaluate_polynomial(x, frozen),
        rtol=1e-5, atol=1e-5,
    )


def test_identity_fit_is_x_and_fixed():
    layer = PolynomialActivation(fit="identity", degree=1)
    x = np.random.default_rng(3).normal(size=(2, 3, 3, 2)).astype("float32")
    np.testing.assert_allclose(layer(x, training=True), x, atol=1e-6)
    assert not layer.trainable_weights


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda: PolynomialActivation(degree=3),
         r"degree must be one of \(1, 2\), got 3"),
        (lambda: PolynomialActivation(fit="chebyshev"),
         "fit must be one of .*, got 'chebyshev'"),
        (lambda: PolynomialActivation(momentum=1.0),
         r"momentum must be in \[0, 1\), got 1.0"),
    ],
    ids=["degree", "fit", "momentum"],
)
def test_bad_arguments_raise(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


def test_stability_options_bound_the_quadratic_coefficients(tmp_path):

    check_layer_contract(
        lambda: PolynomialActivation(quadratic_decay=1e-2, max_quadratic=0.1),
        (4, 4, 3), tmp_path)
    layer = PolynomialActivation(quadratic_decay=0.5, refit_steps=0)
    layer.build((None, 3))
    c2 = keras.ops.convert_to_numpy(layer.coefficients)[-1]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.losses[0]), 0.5 * np.sum(c2**2),
        rtol=1e-6)
    refitted = PolynomialActivation(quadratic_decay=0.5, refit_every=1)
    far_from_standard_normal(refitted)(np.ones((2, 8, 8, 3)), training=True)
    assert np.abs(numpy(refitted.fitted)).max() > 0.1
    # the penalty is on the coefficients, fitted part included
    np.testing.assert_allclose(
        numpy(refitted.losses[0]),
        0.5 * np.sum(numpy(refitted.coefficients)[-1] ** 2), rtol=1e-6)
    clipped = PolynomialActivation(max_quadratic=0.05, refit_steps=0)
    model = keras.Sequential([keras.Input((3,)), clipped])
    model.compile(keras.optimizers.SGD(10.0), "mse")
    x = np.ones((8, 3), "float32")
    model.fit(x, 100.0 * x, epochs=1, verbose=0)  # pushes c2 far up
    coefficients = keras.ops.convert_to_numpy(clipped.coefficients)
    assert np.all(np.abs(coefficients[-1]) <= 0.05 + 1e-7)
    assert np.any(np.abs(coefficients[:-1]) > 1.0)  # the rest moved freely
    refit = PolynomialActivation(max_quadratic=0.05, refit_every=1)
    x = np.random.default_rng(4).normal(0.0, 0.5, (64, 3)).astype("float32")
    y = refit(x, training=True)  # the fit's c2 is about 0.4: clipped
    coefficients = numpy(refit.coefficients)
    np.testing.assert_allclose(coefficients[-1], 0.05, rtol=1e-6)
    np.testing.assert_allclose(y, evaluate_polynomial(x, coefficients),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="max_quadratic"):
        PolynomialActivation(max_quadratic=0.0)
    with pytest.raises(ValueError, match="quadratic_decay"):
        PolynomialActivation(quadratic_decay=float("nan"))


def test_refits_take_effect_in_compiled_training():
    """The issue's experiment: 4 steps at learning rate 0 after a conv whose
    outputs are far from N(0, 1). The coefficients leave the N(0, 1) fit
    for the fit of the running statistics on every backend (the JAX trainer
    keeps the forward pass's writes to the non-trainable fitted part)."""
    keras.utils.set_random_seed(0)
    layer = PolynomialActivation(refit_every=1)
    model = far_from_standard_normal(layer)
    model.compile(keras.optimizers.SGD(0.0), "mse")
    before = numpy(layer.coefficients)
    x = np.random.default_rng(0).normal(size=(32, 8, 8, 3)).astype("float32")
    model.fit(x, np.zeros((32, 8, 8, 4), "float32"), batch_size=8,
              verbose=0)
    after = numpy(layer.coefficients)
    assert float(numpy(layer.steps)) == 4.0
    np.testing.assert_allclose(
        after, numpy(dapa_coefficients(layer.moving_mean, layer.moving_std)),
        atol=1e-6)
    assert np.abs(after - before).max() > 0.45  # c1: 0.5 -> about 1


def test_backprop_moves_the_learned_part_between_refits():
    """A refit step gives the coefficients no gradient (plain SGD leaves
    them at the fit); the steps between refits train the learned part and
    leave the fitted part alone."""
    keras.utils.set_random_seed(0)
    layer = PolynomialActivation(refit_every=2, refit_steps=4)
    model = far_from_standard_normal(layer, bias=1.0)
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x = np.random.default_rng(1).normal(size=(8, 8, 8, 3)).astype("float32")
    y = np.random.default_rng(2).normal(size=(8, 8, 8, 4)).astype("float32")
    initial = numpy(layer.learned)
    model.train_on_batch(x, y)  # step 0: refit
    np.testing.assert_array_equal(numpy(layer.learned), initial)
    fitted = numpy(layer.fitted)
    fit = numpy(dapa_coefficients(layer.moving_mean, layer.moving_std))
    np.testing.assert_allclose(numpy(layer.coefficients), fit, atol=1e-6)
    model.train_on_batch(x, y)  # step 1: backprop only
    np.testing.assert_array_equal(numpy(layer.fitted), fitted)
    moved = numpy(layer.learned) - initial
    assert np.abs(moved).min() > 1e-4
    np.testing.assert_allclose(numpy(layer.coefficients), fit + moved,
                               atol=1e-6)


def test_files_saved_before_the_fitted_part_load_unchanged(tmp_path):
    """``data/old_polynomial.keras`` was saved by the version with one
    trainable ``coefficients`` variable (``data/make_old_polynomial.py``):
    it loads with the coefficients and predictions it was saved with, and
    saves again in the current format."""
    saved = np.load(DATA / "old_polynomial.npz")
    model = keras.saving.load_model(DATA / "old_polynomial.keras")
    for name in ("poly", "selector", "identity"):
        layer = model.get_layer(name)
        np.testing.assert_array_equal(numpy(layer.coefficients), saved[name])
        assert not np.any(numpy(getattr(layer, "polynomial", layer).fitted))
    predictions = model.predict(saved["x"], verbose=0)
    np.testing.assert_allclose(predictions, saved["predictions"], atol=1e-6)
    model.save(tmp_path / "again.keras")
    again = keras.saving.load_model(tmp_path / "again.keras")
    np.testing.assert_array_equal(again.predict(saved["x"], verbose=0),
                                  predictions)
