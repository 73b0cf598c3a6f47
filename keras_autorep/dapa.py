"""Distribution-aware polynomial approximation (DaPa) of an activation.

Pure math, independent of any layer: the least-squares fit of an
activation ``f`` by a polynomial when ``x ~ N(mu, sigma^2)``. For ReLU,
``max(x, 0)``, it is in closed form; with ``z = mu / sigma`` and
``phi``/``Phi`` the standard normal pdf/cdf:

* degree 2: ``c2 = phi(z) / (2 sigma)``, ``c1 = Phi(z) - z phi(z)``,
  ``c0 = (sigma / 2) (1 + z^2) phi(z)``
* degree 1: ``c1 = Phi(z)``, ``c0 = sigma phi(z)``

Coefficients are always ordered by ascending power: ``[c0, c1, c2]``.
At ``mu = 0, sigma = 1`` the quadratic is ``0.1995 + 0.5 x + 0.1995 x^2``.

For any other ``f`` (``dapa_coefficients(..., function=f)``) the fit is
solved in the standardised variable ``t = (x - mu) / sigma``: the normal
equations' moment matrix ``E[t^(j+k)]`` of ``N(0, 1)`` is exact, and the
right-hand side ``E[t^j f(mu + sigma t)]`` is a Gauss-Hermite quadrature
with ``GAUSS_HERMITE_NODES`` nodes (exact for smooth ``f`` to float32
precision; a kink, as in relu6 or leaky ReLU, leaves coefficient errors
of a few 1e-3 against an exact fit).
"""

import math

import numpy as np
from keras import ops

SUPPORTED_DEGREES = (1, 2)

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _check_degree(degree):
    if degree not in SUPPORTED_DEGREES:
        raise ValueError(
            f"degree must be one of {SUPPORTED_DEGREES}, got {degree!r}"
        )


def dapa_coefficients(mean, std, degree=2, function=None):
    """Least-squares polynomial fit of an activation under
    ``N(mean, std^2)``.

    Works on Python floats, NumPy arrays and backend tensors alike (it is
    written with ``keras.ops``), element-wise over per-channel statistics.

    Args:
        mean: per-channel mean of the activation's input, shape ``(C,)``.
        std: per-channel standard deviation, same shape, must be > 0.
        degree: 1 or 2.
        function: the activation (a ``keras.ops`` function of one tensor);
            ``None`` (default): ReLU, in closed form.

    Returns:
        Tensor of shape ``(degree + 1, C)``: ``[c0, c1(, c2)]``.
    """
    _check_degree(degree)
    mean = ops.convert_to_tensor(mean, dtype="float32")
    std = ops.convert_to_tensor(std, dtype="float32")
    if function is not None:
        return _gauss_hermite_fit(mean, std, degree, function)
    z = mean / std
    pdf = _INV_SQRT_2PI * ops.exp(-0.5 * z * z)
    cdf = 0.5 * (1.0 + ops.erf(z / math.sqrt(2.0)))
    if degree == 1:
        return ops.stack([std * pdf, cdf])
    return ops.stack(
        [0.5 * std * (1.0 + z * z) * pdf, cdf - z * pdf, pdf / (2.0 * std)]
    )


GAUSS_HERMITE_NODES = 96


def _standard_normal_moment(power):
    """``E[t^power]`` for ``t ~ N(0, 1)``: ``(power - 1)!!`` or 0."""
    if power % 2:
        return 0.0
    return float(np.prod(np.arange(power - 1, 0, -2)))


def _gauss_hermite_fit(mean, std, degree, function):
    """The least-squares fit of ``function`` under ``N(mean, std^2)``."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(GAUSS_HERMITE_NODES)
    weights = weights / weights.sum()  # quadrature for E[.] under N(0, 1)
    powers = np.arange(degree + 1)
    moments = np.array([[_standard_normal_moment(j + k) for k in powers]
                        for j in powers])
    # q = M^-1 E[t^j f]: the fit in t; weights folded into one (d+1, n) map.
    solve = np.linalg.solve(moments, nodes[None, :] ** powers[:, None])
    solve = ops.convert_to_tensor((solve * weights).astype("float32"))
    x = mean[None, :] + std[None, :] * ops.convert_to_tensor(
        nodes.astype("float32"))[:, None]
    q = ops.matmul(solve, ops.cast(function(x), "float32"))  # (d + 1, C)
    # p(x) = sum_k q_k ((x - mean) / std)^k, expanded in powers of x.
    slope, shift = 1.0 / std, -mean / std
    if degree == 1:
        return ops.stack([q[0] + q[1] * shift, q[1] * slope])
    return ops.stack([
        q[0] + q[1] * shift + q[2] * shift * shift,
        q[1] * slope + 2.0 * q[2] * slope * shift,
        q[2] * slope * slope,
    ])


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
