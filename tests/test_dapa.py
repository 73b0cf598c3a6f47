"""keras_autorep.dapa: the closed-form DaPa polynomial fit of ReLU."""

import keras
import numpy as np
import pytest

from keras_autorep.dapa import dapa_coefficients, evaluate_polynomial

pytestmark = pytest.mark.backend_agnostic


def test_dapa_standard_normal_values():
    c = keras.ops.convert_to_numpy(dapa_coefficients([0.0], [1.0]))[:, 0]
    np.testing.assert_allclose(c, [0.1995, 0.5, 0.1995], atol=5e-5)


@pytest.mark.parametrize("degree", [1, 2])
@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (1.5, 0.7), (-2.0, 3.0), (0.3, 0.05)])
def test_dapa_closed_form_matches_least_squares(degree, mean, std):
    samples = np.random.default_rng(1).normal(mean, std, size=2_000_000)
    fitted = np.polynomial.polynomial.polyfit(samples, np.maximum(samples, 0), degree)
    closed = keras.ops.convert_to_numpy(dapa_coefficients([mean], [std], degree))[:, 0]
    # Compare the fitted functions over the bulk of the distribution.
    grid = np.linspace(mean - 2 * std, mean + 2 * std, 41)
    np.testing.assert_allclose(
        np.polynomial.polynomial.polyval(grid, closed),
        np.polynomial.polynomial.polyval(grid, fitted),
        atol=5e-3 * max(std, 1.0),
    )


def test_evaluate_polynomial_is_per_channel_ascending_powers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    c = rng.normal(size=(3, 4)).astype("float32")
    expected = c[0] + c[1] * x + c[2] * x**2
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(evaluate_polynomial(x, c)), expected,
        rtol=1e-5, atol=1e-5,
    )


def _quadrature_fit(function, mean, std, degree):
    """Least-squares fit under N(mean, std^2) by dense numerical integration
    (a 400,001-point grid over +-12 std), independent of Gauss-Hermite."""
    x = np.linspace(mean - 12 * std, mean + 12 * std, 400_001)
    weights = np.exp(-0.5 * ((x - mean) / std) ** 2)
    basis = np.stack([x**k for k in range(degree + 1)], axis=1)
    gram = (basis * weights[:, None]).T @ basis
    return np.linalg.solve(gram, (basis * weights[:, None]).T @ function(x))


def _erf(x):
    import math

    return np.vectorize(math.erf)(x)


_NUMPY_ACTIVATIONS = {
    # name: (NumPy reference, coefficient tolerance: smooth functions are
    # integrated exactly, a kink leaves a quadrature error of a few 1e-3)
    "silu": (lambda x: x / (1 + np.exp(-x)), 2e-6),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), 2e-6),
    "gelu": (lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))), 2e-6),
    "relu6": (lambda x: np.clip(x, 0, 6), 1e-2),
    "leaky_relu": (lambda x: np.where(x > 0, x, 0.2 * x), 1e-2),
    "hard_sigmoid": (lambda x: np.clip(x + 3, 0, 6) / 6, 1e-2),
    "hard_swish": (lambda x: x * np.clip(x + 3, 0, 6) / 6, 1e-2),
}


@pytest.mark.parametrize("name", sorted(_NUMPY_ACTIVATIONS))
@pytest.mark.parametrize("degree", [1, 2])
@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (2.0, 3.0), (-1.0, 0.5)])
def test_gauss_hermite_fit_matches_a_numerical_fit(name, degree, mean, std):
    from keras_autorep.layers.activations import activation_function

    reference, tolerance = _NUMPY_ACTIVATIONS[name]
    fitted = keras.ops.convert_to_numpy(dapa_coefficients(
        [mean], [std], degree, function=activation_function(name)))[:, 0]
    np.testing.assert_allclose(
        fitted, _quadrature_fit(reference, mean, std, degree),
        atol=tolerance)


def test_gauss_hermite_fit_of_relu_is_near_the_closed_form():
    mean, std = np.array([0.0, 1.5, -2.0]), np.array([1.0, 0.7, 3.0])
    closed = keras.ops.convert_to_numpy(dapa_coefficients(mean, std))
    numeric = keras.ops.convert_to_numpy(dapa_coefficients(
        mean, std, function=keras.ops.relu))
    assert np.all(np.abs(numeric - closed) <= 5e-3 * std)  # per channel
    assert not np.allclose(numeric, 0.0)
