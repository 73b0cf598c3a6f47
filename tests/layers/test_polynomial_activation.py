"""PolynomialActivation: DaPa refits from running statistics, then free
training; serialisation."""

import keras
import numpy as np
import pytest

from keras_autorep import PolynomialActivation
from keras_autorep.dapa import dapa_coefficients, evaluate_polynomial
from layer_contract import check_layer_contract

pytestmark = pytest.mark.backend_agnostic


def test_polynomial_keeps_the_layer_contract(tmp_path):
    model, reloaded, x = check_layer_contract(
        lambda: PolynomialActivation(refit_every=5, refit_steps=50),
        (4, 4, 3), tmp_path,
    )
    layer = model.layers[-1]
    # The training call refitted the coefficients: the reloaded model
    # computes with the refitted ones.
    assert float(keras.ops.convert_to_numpy(layer.steps)) == 1.0
    for name in ("coefficients", "moving_mean", "moving_std", "steps"):
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
    layer.coefficients.assign(frozen)  # as if backprop had changed them
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
    "factory",
    [
        lambda: PolynomialActivation(degree=3),
        lambda: PolynomialActivation(fit="chebyshev"),
        lambda: PolynomialActivation(momentum=1.0),
    ],
    ids=["degree", "fit", "momentum"],
)
def test_bad_arguments_raise(factory):
    with pytest.raises(ValueError):
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
    clipped = PolynomialActivation(max_quadratic=0.05, refit_steps=0)
    model = keras.Sequential([keras.Input((3,)), clipped])
    model.compile(keras.optimizers.SGD(10.0), "mse")
    x = np.ones((8, 3), "float32")
    model.fit(x, 100.0 * x, epochs=1, verbose=0)  # pushes c2 far up
    coefficients = keras.ops.convert_to_numpy(clipped.coefficients)
    assert np.all(np.abs(coefficients[-1]) <= 0.05 + 1e-7)
    assert np.any(np.abs(coefficients[:-1]) > 1.0)  # the rest moved freely
    with pytest.raises(ValueError, match="max_quadratic"):
        PolynomialActivation(max_quadratic=0.0)
    with pytest.raises(ValueError, match="quadratic_decay"):
        PolynomialActivation(quadratic_decay=float("nan"))
