"""AutoReP ReLU/polynomial selector: one ReLU site under a budget."""

import keras
import numpy as np
from keras import ops

from keras_autorep.backends import current
from keras_autorep.costs.sites import FORMS
from keras_autorep.dapa import evaluate_polynomial
from keras_autorep.layers.activations import get as get_activation
from keras_autorep.layers.polynomial_activation import PolynomialActivation
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
    ``f'(x)``; clipped, ``clip(x)`` too). Under TensorFlow the forward
    and the backward pass each compile alone with XLA (``xla_scope``:
    one fused loop instead of a pass over the map per element-wise op),
    while the model's other ops keep TensorFlow's kernels.

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
    with current().xla_scope():
        at = x if bounds is None else ops.clip(x, bounds[0], bounds[1])
        polynomial = evaluate_polynomial(at, coefficients)
        outputs = polynomial + mask * (record.function(x) - polynomial)

    def gradient(upstream):
        with current().xla_scope():
            return _gradient(upstream)

    def _gradient(upstream):
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
