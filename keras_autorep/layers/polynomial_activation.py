"""Per-channel polynomial activation with DaPa initialisation."""

import keras
from keras import ops

from keras_autorep.backends import current
from keras_autorep.dapa import (
    SUPPORTED_DEGREES,
    dapa_coefficients,
    evaluate_polynomial,
    identity_coefficients,
)
from keras_autorep.layers.activations import activation_function, canonical_name

FITS = ("dapa", "identity")


@keras.saving.register_keras_serializable(package="keras_autorep")
class QuadraticDecay(keras.regularizers.Regularizer):
    """L2 penalty ``factor * sum(c2^2)`` on the quadratic coefficients (the
    last row of a ``(degree + 1, C)`` coefficient matrix): it pulls the
    polynomials towards their linear part, which cannot overflow."""

    def __init__(self, factor):
        self.factor = float(factor)

    def __call__(self, coefficients):
        return self.factor * ops.sum(ops.square(coefficients[-1]))

    def get_config(self):
        return {"factor": self.factor}


@keras.saving.register_keras_serializable(package="keras_autorep")
class PolynomialActivation(keras.layers.Layer):
    """Per-channel polynomial ``p(x) = c0 + c1 x (+ c2 x^2)``.

    The cheap replacement for ReLU in private inference (the budget-0 case).
    With ``fit="dapa"`` the layer tracks per-channel running mean and standard
    deviation of its input (batch-norm statistics without affine terms) and,
    during the first ``refit_steps`` training steps, re-fits the coefficients
    every ``refit_every`` steps to the least-squares fit of its
    ``activation`` (ReLU by default) under ``N(mean, std^2)`` (see
    ``keras_autorep.dapa``). Afterwards the
    coefficients are ordinary trainable weights. Under data parallelism the
    statistics are those of the global batch (all-reduced across
    TensorFlow replicas), so every replica fits the same coefficients.
    ``fit="identity"`` gives the fixed ``p(x) = x`` used by SNL.

    The coefficients (``coefficients``) are the sum of two variables: the
    trainable ``learned`` part, which only the optimizer moves, and the
    non-trainable ``fitted`` part, which only the forward pass writes. A
    refit sets ``fitted <- fit - learned``, so the sum is the fit, as if
    the refit had overwritten one variable. Keras's stateless JAX training
    keeps a forward pass's writes to non-trainable variables only, so the
    split makes refits take effect on JAX as on TensorFlow. Optimizer-level
    decoupled weight decay (``AdamW``) shrinks the learned part only.

    The statistics only serve the re-fits, so a trainer may stop computing
    them once the refit phase is over (``statistics_needed()`` is False):
    it sets the Python switch ``track_statistics = False`` and traces its
    training step again (``StudentTrainer`` does this at each epoch start).

    The channel axis is the last one, so the layer works after Conv2D
    (``(N, H, W, C)``) and Dense (``(N, C)``) layers alike.

    Args:
        degree: 1 or 2 (default).
        fit: ``"dapa"`` (default) or ``"identity"``.
        refit_every: steps between DaPa refits during the refit phase.
        refit_steps: length of the refit phase in training steps; 0 disables
            refitting (coefficients start at the ``N(0, 1)`` fit).
        momentum: momentum of the running statistics (Keras convention:
            ``new = momentum * old + (1 - momentum) * batch``).
        epsilon: added to the variance before the square root.
        quadratic_decay: L2 factor on the quadratic coefficients
            (``QuadraticDecay``; default 0: none). Stability options for
            degree 2, both off by default: a deep stack of quadratics can
            overflow on inputs off the training range.
        max_quadratic: bound on ``|c2|``: every polynomial the layer
            computes with, refitted or trained, is clipped to it (default
            ``None``: none).
        activation: the activation DaPa approximates (a name in
            ``keras_autorep.layers.activations``; default ``"relu"``, in
            closed form; the others by a Gauss-Hermite fit).

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 3)),
    ...     keras.layers.Conv2D(4, 3),
    ...     PolynomialActivation(),
    ... ])
    """

    def __init__(
        self,
        degree=2,
        fit="dapa",
        refit_every=10,
        refit_steps=500,
        momentum=0.9,
        epsilon=1e-3,
        quadratic_decay=0.0,
        max_quadratic=None,
        activation="relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if degree not in SUPPORTED_DEGREES:
            raise ValueError(
                f"degree must be one of {SUPPORTED_DEGREES}, got {degree!r}"
            )
        if fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
        if int(refit_every) < 1 or int(refit_steps) < 0:
            raise ValueError(
                "refit_every must be >= 1 and refit_steps >= 0, got "
                f"{refit_every!r} and {refit_steps!r}"
            )
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if not 0.0 <= quadratic_decay < float("inf") or not (
            max_quadratic is None or 0.0 < max_quadratic < float("inf")
        ):
            raise ValueError(
                "quadratic_decay must be finite and >= 0 and max_quadratic "
                f"None or finite and > 0, got {quadratic_decay!r} and "
                f"{max_quadratic!r}"
            )
        self.activation = canonical_name(activation)
        self.degree = int(degree)
        self.fit = fit
        self.refit_every = int(refit_every)
        self.refit_steps = int(refit_steps)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.quadratic_decay = float(quadratic_decay)
        self.max_quadratic = (
            None if max_quadratic is None else float(max_quadratic)
        )
        self.track_statistics = True

    @property
    def refits(self):
        """Whether this layer re-fits its coefficients during training."""
        return self.fit == "dapa" and self.refit_steps > 0

    def _dapa(self, mean, std):
        """The DaPa fit of this layer's activation (ReLU: closed form)."""
        function = (
            None if self.activation == "relu"
            else activation_function(self.activation)
        )
        return dapa_coefficients(mean, std, self.degree, function)

    def statistics_needed(self):
        """Whether training steps still need the running statistics: only
        in the refit phase (reads a variable; call it eagerly)."""
        # ``Variable.numpy`` also reads a mirrored variable inside a
        # distribution scope, where converting its value fails.
        return self.refits and float(self.steps.numpy()) < self.refit_steps

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"{self.name}: the channel (last) axis must be known, "
                f"got input shape {input_shape}"
            )
        if self.fit == "identity":
            initial = identity_coefficients(channels, self.degree)
        else:
            initial = self._dapa(ops.zeros((channels,)), ops.ones((channels,)))
        self.learned = self.add_weight(
            name="learned_coefficients",
            shape=(self.degree + 1, channels),
            initializer=keras.initializers.Constant(
                ops.convert_to_numpy(initial)
            ),
            trainable=self.fit == "dapa",
            regularizer=(
                self.quadratic_penalty
                if self.quadratic_decay and self.degree == 2 else None
            ),
        )
        self.moving_mean = self.add_weight(
            name="moving_mean",
            shape=(channels,),
            initializer="zeros",
            trainable=False,
        )
        self.moving_std = self.add_weight(
            name="moving_std",
            shape=(channels,),
            initializer="ones",
            trainable=False,
        )
        self.steps = self.add_weight(
            name="steps", shape=(), initializer="zeros", trainable=False
        )
        # Last, so that the variables of files saved before it existed keep
        # their indices (see ``load_own_variables``).
        self.fitted = self.add_weight(
            name="fitted_coefficients",
            shape=(self.degree + 1, channels),
            initializer="zeros",
            trainable=False,
        )

    def load_own_variables(self, store):
        """Keras's, and files saved before the fitted part existed (their
        one ``coefficients`` variable is the learned part, the fitted part
        starts at zero: the coefficients are the saved ones)."""
        saved_before = [self.learned, self.moving_mean, self.moving_std,
                        self.steps]
        if len(store.keys()) != len(saved_before):
            super().load_own_variables(store)
            return
        for index, variable in enumerate(saved_before):
            variable.assign(store[str(index)])
        self.fitted.assign(ops.zeros(self.fitted.shape))

    def combine(self, learned, fitted):
        """``(coefficients, fitted)``: ``learned + fitted`` with ``|c2|``
        clipped to ``max_quadratic``, and the fitted part that holds the
        clip. The clip has no gradient: the gradient reaches ``learned``
        unchanged, as it reaches a variable with a constraint."""
        coefficients = learned + fitted
        if self.max_quadratic is None or self.degree != 2:
            return coefficients, fitted
        quadratic = coefficients[-1:]
        bounded = ops.clip(quadratic, -self.max_quadratic, self.max_quadratic)
        clip = ops.stop_gradient(ops.concatenate(
            [ops.zeros_like(coefficients[:-1]), bounded - quadratic], axis=0))
        return coefficients + clip, fitted + clip

    @property
    def coefficients(self):
        """The ``(degree + 1, C)`` coefficients ``[c0, c1(, c2)]`` the layer
        computes with: the learned part plus the fitted part, clipped (a
        tensor; ``assign_coefficients`` sets them)."""
        return self.combine(self.learned.value, self.fitted.value)[0]

    def assign_coefficients(self, coefficients):
        """Sets the coefficients: the learned part takes them, the fitted
        part is zeroed."""
        self.learned.assign(ops.cast(coefficients, self.learned.dtype))
        self.fitted.assign(ops.zeros(self.fitted.shape))

    def quadratic_penalty(self, learned):
        """The regularizer of the learned part: ``QuadraticDecay`` of the
        coefficients it gives with the fitted part."""
        coefficients = self.combine(learned, self.fitted.value)[0]
        return QuadraticDecay(self.quadratic_decay)(coefficients)

    def step_coefficients(self, inputs, training):
        """The coefficients of this forward pass on ``inputs``.

        In training, first updates the running statistics (while
        ``track_statistics``) and, in the refit phase, refits; the fitted
        part keeps the refit and the ``max_quadratic`` clip. The gradient
        reaches the learned part, except at a refit.
        """
        learned, fitted = self.learned.value, self.fitted.value
        if not training or self.fit == "identity":
            return self.combine(learned, fitted)[0]
        refitting = self.track_statistics and self.refits
        if refitting:  # read before update_statistics counts this step
            steps = self.steps.value
            refit_now = ops.logical_and(
                ops.less(steps, float(self.refit_steps)),
                ops.equal(ops.mod(steps, float(self.refit_every)), 0.0),
            )
        if self.track_statistics:
            mean, std = self.update_statistics(inputs)
        if refitting:
            fit = ops.stop_gradient(self._dapa(mean, std))
            fitted = ops.where(refit_now, fit - learned, fitted)
        coefficients, fitted = self.combine(learned, fitted)
        if refitting:  # a refit leaves the coefficients no gradient
            coefficients = ops.where(
                refit_now, ops.stop_gradient(coefficients), coefficients)
        if refitting or self.max_quadratic is not None:
            self.fitted.assign(ops.stop_gradient(fitted))
        return coefficients

    def update_statistics(self, inputs):
        """Updates the running statistics with ``inputs``' batch and counts
        the step; returns the new ``(mean, std)``."""
        axes = tuple(range(len(inputs.shape) - 1))
        x = ops.stop_gradient(ops.cast(inputs, "float32"))
        if current().replicas_in_sync() > 1:  # statistics of the global batch
            batch_mean, batch_var = ops.moments(x, axes, synchronized=True)
        else:  # one device, or JAX's global program
            batch_mean = ops.mean(x, axis=axes)
            batch_var = ops.var(x, axis=axes)
        batch_std = ops.sqrt(batch_var + self.epsilon)
        steps = self.steps.value
        # The first batch replaces the placeholder N(0, 1) statistics.
        momentum = ops.where(ops.equal(steps, 0.0), 0.0, self.momentum)
        mean = momentum * self.moving_mean.value + (1.0 - momentum) * batch_mean
        std = momentum * self.moving_std.value + (1.0 - momentum) * batch_std
        self.moving_mean.assign(mean)
        self.moving_std.assign(std)
        self.steps.assign(steps + 1.0)
        return mean, std

    def call(self, inputs, training=False):
        coefficients = self.step_coefficients(inputs, training)
        return evaluate_polynomial(
            inputs, ops.cast(coefficients, inputs.dtype)
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            degree=self.degree,
            fit=self.fit,
            refit_every=self.refit_every,
            refit_steps=self.refit_steps,
            momentum=self.momentum,
            epsilon=self.epsilon,
            quadratic_decay=self.quadratic_decay,
            max_quadratic=self.max_quadratic,
            activation=self.activation,
        )
        return config
