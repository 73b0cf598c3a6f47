"""AutoReP ReLU/polynomial selector: one ReLU site under a budget."""

import keras
import numpy as np
from keras import ops

from keras_autorep.costs.sites import FORMS
from keras_autorep.layers.polynomial_activation import PolynomialActivation
from keras_autorep.layers.selection import selection
from keras_autorep.layers.shapes import activation_shape

GRANULARITIES = ("pixel", "channel")
POLYNOMIAL_OPTIONS = (
    "degree", "fit", "refit_every", "refit_steps", "momentum", "epsilon",
    "quadratic_decay", "max_quadratic", "activation", "clip_range",
)
# The replacements of removed positions: a fixed form, or learned.
REPLACEMENTS = (*FORMS, "auto")
# The polynomial branch of each fixed form.
FORM_POLYNOMIALS = {"poly2": dict(degree=2, fit="dapa"),
                    "poly1": dict(degree=1, fit="dapa"),
                    "identity": dict(degree=1, fit="identity")}
# Initial form logits of a learned replacement (FORMS order): degree 2,
# the function AutoReP's selection starts from.
INITIAL_FORM_LOGITS = (1.0, 0.0, 0.0)


def replacement_form(degree, fit):
    """The form of a polynomial branch's ``degree`` and ``fit``."""
    return "identity" if fit == "identity" else f"poly{degree}"


def _polynomial_options(replacement, options):
    """The branch options of ``replacement`` (``None``: from ``degree``
    and ``fit``, as configs of earlier versions give them); ``ValueError``
    when they contradict each other."""
    if replacement is None:
        return replacement_form(options.get("degree", 2),
                                options.get("fit", "dapa")), options
    if replacement not in REPLACEMENTS:
        raise ValueError(f"replacement must be one of {REPLACEMENTS}, got "
                         f"{replacement!r}")
    form = FORM_POLYNOMIALS.get(replacement, FORM_POLYNOMIALS["poly2"])
    clash = {key: options[key] for key in form
             if key in options and options[key] != form[key]}
    if clash:
        raise ValueError(f"replacement={replacement!r} sets {form}; "
                         f"got {clash} too")
    return replacement, {**options, **form}




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
        replacement: what removed positions compute (``REPLACEMENTS``):
            ``"poly2"`` (default: DaPa's quadratic), ``"poly1"`` (DaPa's
            least-squares line, per channel, trained), ``"identity"``
            (``x``, as SNL), or ``"auto"``: the site holds all three and
            computes the one of its largest ``form_logits`` (state, not
            trained by gradient: ``keras_autorep.training.FormSearch``
            chooses it by the training objective, as ``train_autorep``
            does; ``form_weights`` lets a cost price it).
        degree, fit, refit_every, refit_steps, momentum, epsilon,
        quadratic_decay, max_quadratic, clip_range: the polynomial branch,
            as in ``PolynomialActivation`` (``degree`` and ``fit`` follow
            from ``replacement``).
        activation: the site's activation ``f`` (default ``"relu"``; any
            name in ``keras_autorep.layers.activations``, e.g. ``"silu"``).

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((32, 32, 3)),
    ...     keras.layers.Conv2D(16, 3, padding="same"),
    ...     ReLUSelector(),
    ...     keras.layers.GlobalAveragePooling2D(),
    ...     keras.layers.Dense(10),
    ... ])
    """

    def __init__(self, granularity="pixel", threshold=0.003,
                 replacement=None, **kwargs):
        polynomial_options = {
            key: kwargs.pop(key) for key in POLYNOMIAL_OPTIONS if key in kwargs
        }
        super().__init__(**kwargs)
        self.replacement, polynomial_options = _polynomial_options(
            replacement, polynomial_options)
        self.polynomial = PolynomialActivation(
            name="polynomial", **polynomial_options
        )
        self.linear = None
        if self.replacement == "auto":
            self.linear = PolynomialActivation(
                name="linear", **{**polynomial_options, "degree": 1})
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
        self._select_clipped = selection(self.polynomial.activation,
                                         clipped=True)

    def build(self, input_shape):
        self.polynomial.build(input_shape)
        if self.linear is not None:
            self.linear.build(input_shape)
            self.form_logits = self.add_weight(
                name="form_logits", shape=(len(FORMS),),
                initializer=keras.initializers.Constant(INITIAL_FORM_LOGITS),
                trainable=False)
        self.activation_shape = activation_shape(self, input_shape)
        if self.granularity == "pixel":
            indicator_shape = self.activation_shape
        else:
            indicator_shape = (self.activation_shape[-1],)
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
    def clips(self):
        """Whether training clips the polynomial's input to its fitted
        range (``clip_range`` of a DaPa polynomial)."""
        return self.polynomial.clip_range > 0 and self.fit == "dapa"

    @property
    def coefficients(self):
        """The ``(degree + 1, C)`` coefficients of the current form."""
        return self.form_coefficients(self.current_form())

    def current_form(self):
        """The replacement removed positions compute now: the fixed form,
        or the learned one of the largest logit (reads a variable)."""
        if self.linear is None:
            return self.replacement
        logits = keras.ops.convert_to_numpy(self.form_logits)
        return FORMS[int(np.argmax(logits))]

    def form_coefficients(self, form):
        """The ``(degree + 1, C)`` coefficients of ``form`` (its degree:
        2, or 1 for ``poly1`` and ``identity``)."""
        if form == "identity":
            channels = self.activation_shape[-1]
            return ops.stack([ops.zeros((channels,)), ops.ones((channels,))])
        if form == "poly1" and self.linear is not None:
            return self.linear.coefficients
        if form != self.current_form() and self.linear is None:
            raise ValueError(f"{self.name} replaces with "
                             f"{self.replacement}, not {form}")
        return self.polynomial.coefficients

    def form_weights(self):
        """``{form: weight}`` of the current forward pass: ``{form: 1.0}``
        for a fixed form; for a learned one the one-hot of the largest
        logit, over every form (a cost prices each)."""
        if self.linear is None:
            return {self.replacement: 1.0}
        logits = ops.convert_to_tensor(self.form_logits)
        weights = ops.one_hot(ops.argmax(logits), len(FORMS))
        return {form: weights[i] for i, form in enumerate(FORMS)}

    def _replacement_coefficients(self, inputs, training):
        """The ``(3, C)`` or ``(degree + 1, C)`` coefficients removed
        positions compute with in this forward pass (a learned form: the
        forms' coefficients weighted by ``form_weights``)."""
        quadratic = self.polynomial.step_coefficients(inputs, training)
        if self.linear is None:
            return quadratic
        linear = self.linear.step_coefficients(inputs, training)
        channels = self.activation_shape[-1]
        zeros, ones = ops.zeros((channels,)), ops.ones((channels,))
        candidates = {
            "poly2": quadratic,
            "poly1": ops.concatenate([linear, zeros[None]], axis=0),
            "identity": ops.stack([zeros, ones, zeros]),
        }
        weights = self.form_weights()
        return sum(weights[form] * candidates[form] for form in FORMS)

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
        coefficients = self._replacement_coefficients(inputs, training)
        if training:
            mask = self.straight_through_mask()
        else:
            mask = self.mask.value
        arguments = [inputs, ops.cast(mask, inputs.dtype),
                     ops.cast(coefficients, inputs.dtype)]
        if training and self.clips:
            bounds = self.polynomial.fitted_bounds(self.polynomial.clip_range)
            return self._select_clipped(*arguments,
                                        ops.cast(bounds, inputs.dtype))
        return self._select(*arguments)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        polynomial = self.polynomial.get_config()
        config.update({key: polynomial[key] for key in POLYNOMIAL_OPTIONS})
        config.update(granularity=self.granularity, threshold=self.threshold,
                      replacement=self.replacement)
        return config
