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
