"""Distribution-aware polynomial approximation (DaPa) of ReLU.

Pure math, independent of any layer: the least-squares fit of ``max(x, 0)``
by a polynomial when ``x ~ N(mu, sigma^2)``, in closed form. With
``z = mu / sigma`` and ``phi``/``Phi`` the standard normal pdf/cdf:

* degree 2: ``c2 = phi(z) / (2 sigma)``, ``c1 = Phi(z) - z phi(z)``,
  ``c0 = (sigma / 2) (1 + z^2) phi(z)``
* degree 1: ``c1 = Phi(z)``, ``c0 = sigma phi(z)``

Coefficients are always ordered by ascending power: ``[c0, c1, c2]``.
At ``mu = 0, sigma = 1`` the quadratic is ``0.1995 + 0.5 x + 0.1995 x^2``.
"""

import math

from keras import ops

SUPPORTED_DEGREES = (1, 2)

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _check_degree(degree):
    if degree not in SUPPORTED_DEGREES:
        raise ValueError(
            f"degree must be one of {SUPPORTED_DEGREES}, got {degree!r}"
        )


def dapa_coefficients(mean, std, degree=2):
    """Least-squares polynomial fit of ReLU under ``N(mean, std^2)``.

    Works on Python floats, NumPy arrays and backend tensors alike (it is
    written with ``keras.ops``), element-wise over per-channel statistics.

    Args:
        mean: per-channel mean of the activation's input, shape ``(C,)``.
        std: per-channel standard deviation, same shape, must be > 0.
        degree: 1 or 2.

    Returns:
        Tensor of shape ``(degree + 1, C)``: ``[c0, c1(, c2)]``.
    """
    _check_degree(degree)
    mean = ops.convert_to_tensor(mean, dtype="float32")
    std = ops.convert_to_tensor(std, dtype="float32")
    z = mean / std
    pdf = _INV_SQRT_2PI * ops.exp(-0.5 * z * z)
    cdf = 0.5 * (1.0 + ops.erf(z / math.sqrt(2.0)))
    if degree == 1:
        return ops.stack([std * pdf, cdf])
    return ops.stack(
        [0.5 * std * (1.0 + z * z) * pdf, cdf - z * pdf, pdf / (2.0 * std)]
    )


def identity_coefficients(channels, degree=2):
    """Coefficients of ``p(x) = x`` (the SNL linear replacement)."""
    _check_degree(degree)
    rows = [ops.zeros((channels,)), ops.ones((channels,))]
    rows += [ops.zeros((channels,))] * (degree - 1)
    return ops.stack(rows)


def evaluate_polynomial(x, coefficients):
    """Evaluate per-channel polynomials on ``x`` (channels on the last axis).

    Args:
        x: tensor ``(..., C)``.
        coefficients: ``(degree + 1, C)`` ascending powers, or
            ``(degree + 1, N)`` matching ``x``'s last axis element-wise.
    """
    result = coefficients[-1]
    for row in range(coefficients.shape[0] - 2, -1, -1):
        result = result * x + coefficients[row]
    return result
