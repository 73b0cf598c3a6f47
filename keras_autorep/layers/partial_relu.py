"""Hardened inference layer: ReLU (or the site's activation) on kept
positions only."""

import contextlib
import threading

import keras
import numpy as np
from keras import ops

from keras_autorep.backends import current
from keras_autorep.costs.sites import check_form
from keras_autorep.dapa import SUPPORTED_DEGREES, evaluate_polynomial
from keras_autorep.layers.activations import activation_function, canonical_name
from keras_autorep.layers.shapes import activation_shape

MERGES = ("scatter", "gather")
_XLA_OFF = threading.local()


@contextlib.contextmanager
def sites_without_xla():
    """Inside, ``PartialReLU`` layers built with ``xla=True`` trace their
    calls without XLA (a graph that must run where XLA does not, such as
    the ``serving_default`` signature)."""
    before = getattr(_XLA_OFF, "on", False)
    _XLA_OFF.on = True
    try:
        yield
    finally:
        _XLA_OFF.on = before


@keras.saving.register_keras_serializable(package="keras_autorep")
class PartialReLU(keras.layers.Layer):
    """ReLU on a fixed set of positions, a per-channel polynomial elsewhere.

    The inference form of a ``ReLUSelector``. Each example's activation map is
    flattened (``H * W * C`` elements, channels last); the ``num_kept`` kept
    elements are gathered and passed through ReLU, the others through
    ``c0 + c1 x (+ c2 x^2)`` with their channel's coefficients. So the graph
    applies ReLU to exactly ``num_kept`` elements per example, which is
    what a private-inference protocol pays for (a masked multiply
    ``m * relu(x) + (1 - m) * p(x)`` would pay for every element).

    ``merge`` says how both parts come together: ``"scatter"`` evaluates the
    polynomial on the whole map and scatters the kept outputs over it (few
    passes over the map: the serving form); ``"gather"`` gathers the
    removed elements apart, evaluates the polynomial on them only and puts
    both parts back in place with one more gather (the PI form: no scatter
    op, no polynomial on a kept position; the ONNX export traces it,
    ``keras_autorep.graph.gather_form``).

    The layer has no trainable state; positions and coefficients live in
    non-trainable weights so ``.keras`` files keep them.

    Args:
        num_kept: number of kept ReLU elements per example.
        degree: polynomial degree, 1 or 2.
        kept_indices: optional flat indices (into ``H * W * C``) of the kept
            elements, set when the layer is built.
        coefficients: optional ``(degree + 1, C)`` coefficients, ascending
            powers, set when the layer is built.
        activation: what kept positions apply (default ``"relu"``; any name
            in ``keras_autorep.layers.activations``, e.g. ``"silu"``).
        merge: ``"scatter"`` (default) or ``"gather"`` (the PI form).
        form: the replacement of the removed positions (``"poly2"``,
            ``"poly1"``, ``"identity"``; default: by ``degree``). An
            identity computes nothing: removed positions pass their input
            on, and a site keeping nothing is no op at all.
        xla: compile the site's ops (scatter form) alone with XLA, the
            model's other layers keeping the backend's kernels (TensorFlow:
            its convolutions on CPU are faster than XLA's); no effect on
            JAX, which compiles whole functions. ``harden(xla="sites")``
            sets it.

    Example:

    >>> layer = PartialReLU(num_kept=2, kept_indices=[0, 5],
    ...                     coefficients=[[0.2, 0.2], [0.5, 0.5], [0.2, 0.2]])
    >>> y = layer(np.ones((1, 2, 2, 2), "float32"))
    """

    def __init__(
        self,
        num_kept,
        degree=2,
        kept_indices=None,
        coefficients=None,
        activation="relu",
        merge="scatter",
        form=None,
        xla=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        form = check_form(form or f"poly{degree}")
        if form != "poly2":
            degree = 1
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
        if degree not in SUPPORTED_DEGREES:
            raise ValueError(
                f"degree must be one of {SUPPORTED_DEGREES}, got {degree!r}"
            )
        if int(num_kept) < 0:
            raise ValueError(f"num_kept must be >= 0, got {num_kept!r}")
        self.num_kept = int(num_kept)
        self.degree = int(degree)
        self.form = form
        self.merge = merge
        self.xla = bool(xla)
        self.activation = canonical_name(activation)
        self._kept_function = activation_function(self.activation)
        self._initial_positions = kept_indices
        self._initial_coefficients = coefficients

    def build(self, input_shape):
        self.activation_shape = activation_shape(self, input_shape)
        total = int(np.prod(self.activation_shape))
        if self.num_kept > total:
            raise ValueError(
                f"{self.name}: num_kept={self.num_kept} exceeds the "
                f"{total} elements of activation shape {self.activation_shape}"
            )
        channels = self.activation_shape[-1]

        def index_weight(name, size):
            return self.add_weight(
                name=name,
                shape=(size,),
                dtype="int32",
                initializer="zeros",
                trainable=False,
            )

        self.kept_indices = index_weight("kept_indices", self.num_kept)
        self.removed_indices = index_weight(
            "removed_indices", total - self.num_kept
        )
        self.merge_order = index_weight("merge_order", total)
        self.coefficients = self.add_weight(
            name="coefficients",
            shape=(self.degree + 1, channels),
            initializer="zeros",
            trainable=False,
        )
        if self._initial_positions is not None:
            self.set_kept_positions(self._initial_positions)
        if self._initial_coefficients is not None:
            self.coefficients.assign(
                np.asarray(self._initial_coefficients, dtype="float32")
            )
        self._initial_positions = self._initial_coefficients = None

    @property
    def elementwise(self):
        """Whether the site is one elementwise pass that a linear-layer
        library runs as fast as XLA: all positions kept (its activation),
        or none and an affine or identity replacement. Otherwise it
        gathers and scatters or squares, which XLA fuses into a few
        loops."""
        return (self.num_kept == self.total_relus
                or (self.num_kept == 0 and self.form != "poly2"))

    @property
    def total_relus(self):
        """Elements of the activation map per example."""
        return int(np.prod(self.activation_shape))

    def set_kept_positions(self, kept_indices):
        """Set which flat positions keep their ReLU (must be ``num_kept``)."""
        kept = np.unique(np.asarray(kept_indices, dtype="int64").ravel())
        if kept.size != self.num_kept or kept.size != np.size(kept_indices):
            raise ValueError(
                f"{self.name}: expected {self.num_kept} distinct kept "
                f"indices, got {np.size(kept_indices)} ({kept.size} distinct)"
            )
        total = self.total_relus
        if kept.size and (kept[0] < 0 or kept[-1] >= total):
            raise ValueError(
                f"{self.name}: kept indices must lie in [0, {total})"
            )
        is_kept = np.zeros(total, dtype=bool)
        is_kept[kept] = True
        removed = np.flatnonzero(~is_kept)
        # merge_order[j] = where element j sits in concat([kept, removed]).
        merge_order = np.empty(total, dtype="int64")
        merge_order[kept] = np.arange(kept.size)
        merge_order[removed] = kept.size + np.arange(removed.size)
        self.kept_indices.assign(kept.astype("int32"))
        self.removed_indices.assign(removed.astype("int32"))
        self.merge_order.assign(merge_order.astype("int32"))

    def kept_mask(self):
        """Boolean NumPy mask of the activation shape: True where kept."""
        mask = np.zeros(self.total_relus, dtype=bool)
        mask[ops.convert_to_numpy(self.kept_indices)] = True
        return mask.reshape(self.activation_shape)

    def call(self, inputs):
        if (self.xla and self.merge == "scatter"
                and not getattr(_XLA_OFF, "on", False)):
            with current().xla_scope():
                return self._partial(inputs)
        return self._partial(inputs)

    def _partial(self, inputs):
        # A site keeping all or none of its positions emits only its branch:
        # a ReLU or polynomial op on an empty tensor still costs a PI
        # protocol its rounds.
        if self.num_kept == self.total_relus:
            return self._kept_function(inputs)
        if self.num_kept == 0:
            return self._replace(
                inputs, ops.cast(self.coefficients, inputs.dtype))
        flat = ops.reshape(inputs, (-1, self.total_relus))
        kept = self._kept_function(ops.take(flat, self.kept_indices, axis=1))
        coefficients = ops.cast(self.coefficients, inputs.dtype)
        if self.merge == "gather":
            outputs = self._merge_gathered(flat, kept, coefficients)
        else:
            outputs = self._scatter_kept(
                self._replace(inputs, coefficients), kept)
        return ops.reshape(outputs, (-1,) + self.activation_shape)

    def _scatter_kept(self, polynomial, kept):
        """``polynomial`` (flattened) with ``kept`` written at the kept
        positions of every example."""
        polynomial = ops.reshape(polynomial, (-1, self.total_relus))
        batch = ops.shape(polynomial)[0]
        shape = (batch, self.num_kept)
        rows = ops.broadcast_to(
            ops.expand_dims(ops.arange(batch, dtype="int32"), 1), shape
        )
        columns = ops.broadcast_to(
            ops.expand_dims(ops.cast(self.kept_indices, "int32"), 0), shape
        )
        positions = ops.reshape(ops.stack([rows, columns], axis=-1), (-1, 2))
        return ops.scatter_update(
            polynomial, positions, ops.reshape(kept, (-1,))
        )

    def _merge_gathered(self, flat, kept, coefficients):
        """The PI form: polynomial on the removed elements only, merged
        with ``kept`` by gathers."""
        removed = ops.take(flat, self.removed_indices, axis=1)
        removed_coefficients = ops.take(
            coefficients,
            ops.mod(self.removed_indices, self.activation_shape[-1]),
            axis=1,
        )
        removed = self._replace(removed, removed_coefficients)
        merged = ops.concatenate([kept, removed], axis=1)
        return ops.take(merged, self.merge_order, axis=1)

    def _replace(self, x, coefficients):
        """The replacement of removed positions on ``x``."""
        if self.form == "identity":
            return x
        return evaluate_polynomial(x, coefficients)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_kept=self.num_kept, degree=self.degree,
            activation=self.activation, merge=self.merge, form=self.form,
            xla=self.xla,
        )
        return config
