"""SNL's continuous ReLU mask: a ReLU site during the linearisation search."""

import keras
import numpy as np
from keras import ops

from keras_autorep.layers.shapes import activation_shape

GRANULARITIES = ("pixel", "channel")


def _unit_interval(mask):
    """Weight constraint: project the mask onto ``[0, 1]``."""
    return ops.clip(mask, 0.0, 1.0)


@keras.saving.register_keras_serializable(package="keras_autorep")
class SoftReLUMask(keras.layers.Layer):
    """Interpolates between ReLU and the identity with a trainable mask.

    ``y = m * relu(x) + (1 - m) * x`` with ``m`` a trainable weight in
    ``[0, 1]`` (initialised to 1, i.e. ReLU; projected back onto ``[0, 1]``
    after every optimizer step). This is the search-time form of Selective
    Network Linearization (Cho et al., ICML 2022): an L1 penalty on ``m``
    drives positions to 0 (linear); a position counts as a ReLU while
    ``m > threshold`` (``kept_relus``). After the search the mask is
    binarised into a ``ReLUSelector(fit="identity", degree=1)`` (see
    ``keras_autorep.methods.snl``).

    Args:
        granularity: ``"pixel"`` (default: one mask value per element of the
            activation map, ``H x W x C``) or ``"channel"`` (one per
            channel).
        threshold: mask value above which a position counts as a ReLU
            (default 1e-2, as in the SNL reference code).

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 3)),
    ...     keras.layers.Conv2D(4, 3),
    ...     SoftReLUMask(),
    ... ])
    """

    def __init__(self, granularity="pixel", threshold=1e-2, **kwargs):
        super().__init__(**kwargs)
        if granularity not in GRANULARITIES:
            raise ValueError(
                f"granularity must be one of {GRANULARITIES}, "
                f"got {granularity!r}"
            )
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
        self.granularity = granularity
        self.threshold = float(threshold)

    def build(self, input_shape):
        self.activation_shape = activation_shape(self, input_shape)
        if self.granularity == "pixel":
            shape = self.activation_shape
        else:
            shape = self.activation_shape[-1:]
        self.mask = self.add_weight(
            name="mask",
            shape=shape,
            initializer="ones",
            constraint=_unit_interval,
            trainable=True,
        )

    @property
    def total_relus(self):
        """ReLU elements of this site per example (``prod(H, W, C)``)."""
        return int(np.prod(self.activation_shape))

    @property
    def relus_per_indicator(self):
        """Activation elements that one mask value controls."""
        return self.total_relus // int(np.prod(self.mask.shape))

    def kept_relus(self):
        """ReLU elements per example with ``m > threshold`` (a tensor)."""
        kept = ops.greater(self.mask, self.threshold)
        return ops.sum(ops.cast(kept, "float32")) * float(
            self.relus_per_indicator
        )

    def call(self, inputs):
        mask = ops.cast(self.mask, inputs.dtype)
        return inputs + mask * (ops.relu(inputs) - inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(granularity=self.granularity, threshold=self.threshold)
        return config
