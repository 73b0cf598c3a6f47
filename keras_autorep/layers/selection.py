"""The selection function of a ReLU site, with its hand-written gradient:
``select(x, mask, coefficients) = p(x) + mask * (f(x) - p(x))``."""

from keras import ops

from keras_autorep.dapa import evaluate_polynomial
from keras_autorep.layers.activations import get as get_activation

_SELECTIONS = {}


def selection(activation="relu", clipped=False):
    """The selector function of an activation ``f`` (a registry name):
    ``select(x, mask, coefficients) = p(x) + mask * (f(x) - p(x))`` with a
    hand-written gradient (``f'`` from ``keras_autorep.layers.activations``).

    ``mask`` broadcasts over ``x``'s leading axes (shape ``(H, W, C)`` or
    ``(C,)``), ``coefficients`` are ``(degree + 1, C)``. The backward pass
    keeps only ``x`` (automatic differentiation keeps about three
    activation-sized tensors), and each activation-sized tensor it
    computes depends on the upstream gradient, so that a graph executor
    cannot compute it during the forward pass and hold it until the
    backward pass reaches the site (for ReLU and leaky ReLU it holds
    ``x > 0``, one byte per element; for other activations ``f(x)`` and
    ``f'(x)``; clipped, ``clip(x)`` too).

    ``clipped=True`` gives ``select(x, mask, coefficients, bounds)``: the
    polynomial is evaluated on ``x`` clipped per channel to ``bounds``
    (``(2, C)``: lower, upper; no gradient outside them), ``f`` on ``x``.
    """
    record = get_activation(activation)
    key = (record.name, bool(clipped))
    if key not in _SELECTIONS:
        _SELECTIONS[key] = _make_selection(record, clipped)
    return _SELECTIONS[key]


def _activation_terms(record, x, upstream, upstream_x):
    """``(u * f'(x), u * f(x))`` for the upstream gradient ``u`` (and
    ``upstream_x = u * x``)."""
    if record.negative_slope is None:
        return (upstream * record.derivative(x),
                upstream * record.function(x))
    positive, slope = ops.greater(x, 0.0), record.negative_slope
    if not slope:  # ReLU: no pass for the zeros
        return (ops.where(positive, upstream, 0.0),
                ops.where(positive, upstream_x, 0.0))
    return (ops.where(positive, upstream, slope * upstream),
            ops.where(positive, upstream_x, slope * upstream_x))


def _selected(record, x, mask, coefficients, bounds):
    """``(outputs, gradient)`` of ``selection``; ``bounds`` ``None`` or
    the ``(2, C)`` clip of the polynomial's input."""
    at = x if bounds is None else ops.clip(x, bounds[0], bounds[1])
    polynomial = evaluate_polynomial(at, coefficients)
    outputs = polynomial + mask * (record.function(x) - polynomial)

    def gradient(upstream):
        # u * at^k, and their sums over the axes the mask broadcasts over.
        powers = [upstream]
        for _ in range(1, coefficients.shape[0]):
            powers.append(powers[-1] * at)
        leading = tuple(range(len(x.shape) - len(mask.shape)))
        sums = [ops.sum(power, axis=leading) for power in powers]
        # u * p'(at), zero where the clip cuts the polynomial's input off.
        polynomial_slope = coefficients[1] * upstream
        for k in range(2, coefficients.shape[0]):
            polynomial_slope += float(k) * coefficients[k] * powers[k - 1]
        if bounds is not None:
            polynomial_slope = ops.where(ops.equal(at, x), polynomial_slope,
                                         0.0)
        upstream_x = powers[1] if bounds is None else upstream * x
        activation_slope, activation = _activation_terms(
            record, x, upstream, upstream_x)
        d_inputs = polynomial_slope + mask * (
            activation_slope - polynomial_slope)
        d_mask = ops.sum(activation, axis=leading) - sum(
            coefficients[k] * sums[k] for k in range(len(sums)))
        positions = tuple(range(len(mask.shape) - 1))
        d_coefficients = ops.stack([ops.sum((1.0 - mask) * total,
                                            axis=positions)
                                    for total in sums])
        return d_inputs, d_mask, d_coefficients

    return outputs, gradient


def _upstream(args, upstream):
    """The upstream gradient, passed positionally or by keyword."""
    return args[0] if upstream is None else upstream


def _make_selection(record, clipped):
    if clipped:
        @ops.custom_gradient
        def select_clipped(x, mask, coefficients, bounds):
            outputs, gradient = _selected(record, x, mask, coefficients,
                                          bounds)
            return outputs, lambda *args, upstream=None: (
                *gradient(_upstream(args, upstream)),
                ops.zeros_like(bounds))

        return select_clipped

    @ops.custom_gradient
    def select(x, mask, coefficients):
        outputs, gradient = _selected(record, x, mask, coefficients, None)
        return outputs, lambda *args, upstream=None: gradient(
            _upstream(args, upstream))

    return select


select = selection("relu")
