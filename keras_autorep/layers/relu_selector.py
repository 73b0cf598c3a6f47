"""AutoReP ReLU/polynomial selector: one ReLU site under a budget."""

import keras
import numpy as np
from keras import ops

from keras_autorep.dapa import evaluate_polynomial
from keras_autorep.layers.activations import get as get_activation
from keras_autorep.layers.polynomial_activation import PolynomialActivation

GRANULARITIES = ("pixel", "channel")
POLYNOMIAL_OPTIONS = (
    "degree", "fit", "refit_every", "refit_steps", "momentum", "epsilon",
    "quadratic_decay", "max_quadratic", "activation",
)


_SELECTIONS = {}


def selection(activation="relu"):
    """The selector function of an activation ``f`` (a registry name):
    ``select(x, mask, coefficients) = p(x) + mask * (f(x) - p(x))`` with a
    hand-written gradient (``f'`` from ``keras_autorep.layers.activations``).

    ``mask`` broadcasts over ``x``'s leading axes (shape ``(H, W, C)`` or
    ``(C,)``), ``coefficients`` are ``(degree + 1, C)``. The backward pass
    keeps only ``x`` and ``f(x) - p(x)``, where automatic differentiation
    keeps about twice as many activation-sized tensors, and it needs fewer
    element-wise passes.
    """
    record = get_activation(activation)
    if record.name not in _SELECTIONS:
        _SELECTIONS[record.name] = _make_selection(record.function,
                                                   record.derivative)
    return _SELECTIONS[record.name]


def _make_selection(function, derivative):
    @ops.custom_gradient
    def select(x, mask, coefficients):
        polynomial = evaluate_polynomial(x, coefficients)
        difference = function(x) - polynomial
        outputs = polynomial + mask * difference

        def gradient(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            slope = coefficients[1]  # p'(x), by Horner like p
            for power in range(2, coefficients.shape[0]):
                slope = slope + float(power) * coefficients[power] * x
            d_inputs = upstream * (slope + mask * (derivative(x) - slope))
            leading = tuple(range(len(x.shape) - len(mask.shape)))
            d_mask = ops.sum(upstream * difference, axis=leading)
            channels = tuple(range(len(x.shape) - 1))
            removed = upstream * (1.0 - mask)
            d_coefficients = [ops.sum(removed, axis=channels)]
            for _ in range(1, coefficients.shape[0]):
                removed = removed * x
                d_coefficients.append(ops.sum(removed, axis=channels))
            return d_inputs, d_mask, ops.stack(d_coefficients)

        return outputs, gradient

    return select


select = selection("relu")


@keras.saving.register_keras_serializable(package="keras_autorep")
class ReLUSelector(keras.layers.Layer):
    """Chooses, per position, between ReLU and a cheap polynomial.

    ``y = m * f(x) + (1 - m) * p(x)`` where ``f`` is the site's activation
    (ReLU by default), ``m`` a binary mask and ``p`` a per-channel
    polynomial: the selector holds a ``PolynomialActivation`` (DaPa fit to
    ``f``) as its ``polynomial`` sub-layer.
    The mask follows a trainable indicator ``alpha`` (initialised uniform in
    ``(0, 1)``) through a hysteresis rule applied at the start of every
    training forward pass, with threshold ``t``::

        m <- m * [alpha > -t] + (1 - m) * [alpha > t]

    so a position turns off only when ``alpha < -t`` and back on only when
    ``alpha > t``. The forward pass uses the binary mask; the backward pass
    sends ``softplus(alpha) * dL/dm`` to ``alpha`` (straight-through).
    At inference the stored mask is used as is.

    Args:
        granularity: ``"pixel"`` (default: one indicator per element of the
            activation map, ``H x W x C``) or ``"channel"`` (one per channel).
        threshold: hysteresis threshold ``t`` (default 0.003).
        degree, fit, refit_every, refit_steps, momentum, epsilon,
        quadratic_decay, max_quadratic: the polynomial branch, as in
            ``PolynomialActivation``.
        activation: the site's activation ``f`` (default ``"relu"``; any
            name in ``keras_autorep.layers.activations``, e.g. ``"silu"``).
            ``fit="identity"`` replaces removed ReLUs with ``x`` (SNL).

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((32, 32, 3)),
    ...     keras.layers.Conv2D(16, 3, padding="same"),
    ...     ReLUSelector(),
    ...     keras.layers.GlobalAveragePooling2D(),
    ...     keras.layers.Dense(10),
    ... ])
    """

    def __init__(self, granularity="pixel", threshold=0.003, **kwargs):
        polynomial_options = {
            key: kwargs.pop(key) for key in POLYNOMIAL_OPTIONS if key in kwargs
        }
        super().__init__(**kwargs)
        self.polynomial = PolynomialActivation(
            name="polynomial", **polynomial_options
        )
        if granularity not in GRANULARITIES:
            raise ValueError(
                f"granularity must be one of {GRANULARITIES}, "
                f"got {granularity!r}"
            )
        if not threshold >= 0.0:
            raise ValueError(f"threshold must be >= 0, got {threshold!r}")
        self.granularity = granularity
        self.threshold = float(threshold)
        self._select = selection(self.polynomial.activation)

    def build(self, input_shape):
        self.polynomial.build(input_shape)
        activation_shape = tuple(input_shape[1:])
        if any(dim is None for dim in activation_shape):
            raise ValueError(
                f"{self.name}: ReLUSelector needs a fully known activation "
                f"shape (without batch), got {input_shape}"
            )
        self.activation_shape = activation_shape
        if self.granularity == "pixel":
            indicator_shape = activation_shape
        else:
            indicator_shape = (activation_shape[-1],)
        self.alpha = self.add_weight(
            name="alpha",
            shape=indicator_shape,
            initializer=keras.initializers.RandomUniform(0.0, 1.0),
            trainable=True,
        )
        self.mask = self.add_weight(
            name="mask",
            shape=indicator_shape,
            initializer="ones",
            trainable=False,
        )

    @property
    def activation(self):
        """Name of the site's activation (``"relu"``, ``"silu"``, ...)."""
        return self.polynomial.activation

    @property
    def degree(self):
        return self.polynomial.degree

    @property
    def fit(self):
        return self.polynomial.fit

    @property
    def coefficients(self):
        """The polynomial's ``(degree + 1, C)`` coefficients."""
        return self.polynomial.coefficients

    @property
    def total_relus(self):
        """ReLU elements of this site per example (``prod(H, W, C)``)."""
        total = 1
        for dim in self.activation_shape:
            total *= int(dim)
        return total

    @property
    def relus_per_indicator(self):
        """Activation elements that one indicator controls."""
        return self.total_relus // int(np.prod(self.alpha.shape))

    def hysteresis_mask(self):
        """The mask after one hysteresis update from the current alpha."""
        t = self.threshold
        mask, alpha = self.mask.value, self.alpha.value
        stay_on = ops.cast(ops.greater(alpha, -t), mask.dtype)
        turn_on = ops.cast(ops.greater(alpha, t), mask.dtype)
        return mask * stay_on + (1.0 - mask) * turn_on

    def straight_through_mask(self):
        """Binary mask in value, ``softplus(alpha)`` gradient to alpha."""
        alpha = self.alpha.value
        surrogate = ops.stop_gradient(ops.softplus(alpha)) * (
            alpha - ops.stop_gradient(alpha)
        )
        return ops.stop_gradient(self.mask.value) + surrogate

    def kept_relus(self):
        """Kept ReLU count as a differentiable (straight-through) scalar."""
        return ops.sum(self.straight_through_mask()) * float(
            self.relus_per_indicator
        )

    def call(self, inputs, training=False):
        if training:
            self.mask.assign(self.hysteresis_mask())
        coefficients = self.polynomial.step_coefficients(inputs, training)
        if training:
            mask = self.straight_through_mask()
        else:
            mask = self.mask.value
        return self._select(
            inputs,
            ops.cast(mask, inputs.dtype),
            ops.cast(coefficients, inputs.dtype),
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        polynomial = self.polynomial.get_config()
        config.update({key: polynomial[key] for key in POLYNOMIAL_OPTIONS})
        config.update(granularity=self.granularity, threshold=self.threshold)
        return config
