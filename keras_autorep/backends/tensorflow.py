"""The TensorFlow backend: the walk over a TF graph, ``MirroredStrategy``,
``tf.data`` pipelines, exports. TensorFlow is imported on first use."""

import contextlib

import numpy as np

from keras_autorep.backends.base import Backend
from keras_autorep.backends.traced import (
    COMPARISON,
    MAX,
    RELU,
    SMOOTH,
    TracedOp,
    per_example,
    size,
)

# TensorFlow op type -> (kind, comparisons per element of the first input).
_ELEMENTWISE = {
    "Relu": (RELU, 1),
    "Relu6": (COMPARISON, 2),
    "LeakyRelu": (COMPARISON, 1),
    "Elu": (COMPARISON, 1),
    "Selu": (COMPARISON, 1),
    "ClipByValue": (COMPARISON, 2),
    "Abs": (COMPARISON, 1),
    "Sign": (COMPARISON, 1),
    "Greater": (COMPARISON, 1),
    "GreaterEqual": (COMPARISON, 1),
    "Less": (COMPARISON, 1),
    "LessEqual": (COMPARISON, 1),
    "Maximum": (COMPARISON, 1),
    "Minimum": (COMPARISON, 1),
    "Sigmoid": (SMOOTH, 1),
    "Tanh": (SMOOTH, 1),
    "Erf": (SMOOTH, 1),
}
_REDUCTIONS = ("Max", "ArgMax", "ArgMin", "Min", "Softmax", "LogSoftmax")
_POOLS = ("MaxPool", "MaxPoolV2", "MaxPool3D")


def _static_zero(tensor):
    import tensorflow as tf

    value = tf.get_static_value(tensor)
    return value is not None and not np.any(value)


def _classify(op, dependent):
    """``(kind, comparisons per example)`` of a TensorFlow op, or
    ``None``."""
    inputs = [t for t in op.inputs if t.dtype.is_floating]
    if op.type in _ELEMENTWISE:
        kind, per_element = _ELEMENTWISE[op.type]
        live = [t for t in inputs if t.ref() in dependent]
        if not live:
            return None
        if op.type == "Maximum" and any(
            _static_zero(t) for t in inputs if t.ref() not in dependent
        ):
            kind = RELU
        return kind, per_element * per_example(op.outputs[0].shape, op.name)
    if op.type in _REDUCTIONS + _POOLS:
        if not inputs or inputs[0].ref() not in dependent:
            return None
        size_in = per_example(inputs[0].shape, op.name)
        size_out = per_example(op.outputs[0].shape, op.name)
        if op.type in _POOLS:
            window = size(op.get_attr("ksize"))
            return MAX, size_out * (window - 1)
        if op.type in ("Softmax", "LogSoftmax"):
            rows = size_in // max(1, int(inputs[0].shape[-1]))
            return MAX, size_in - rows
        return MAX, size_in - size_out
    return None


def graph_comparisons(graph, inputs):
    """The ``TracedOp`` list (``layer`` ``None``) of a TensorFlow graph
    whose first axis is the batch, e.g. an exported serving signature.

    Args:
        graph: a ``tf.Graph`` (shapes static, batch of one).
        inputs: the graph's input tensors (the model input): only ops
            depending on them count (TF ``Relu`` or ``Maximum`` with a zero
            constant is a ``RELU``).
    """
    dependent = {t.ref() for t in inputs}
    traced = []
    for op in graph.get_operations():  # topological order
        if any(t.ref() in dependent for t in op.inputs):
            dependent.update(t.ref() for t in op.outputs)
        else:
            continue
        classified = _classify(op, dependent)
        if classified is None:
            continue
        kind, comparisons = classified
        traced.append(TracedOp(None, op.name, kind, comparisons,
                               tuple(op.inputs[0].shape[1:])))
    return traced


class TensorFlow(Backend):
    """TensorFlow: traces the concrete function of an inference call."""

    pipeline = "tf"
    exports = True

    def trace(self, model, examples):
        import tensorflow as tf

        specs = [tf.TensorSpec(x.shape, x.dtype) for x in examples]
        function = tf.function(
            lambda *xs: model(xs[0] if len(xs) == 1 else list(xs),
                              training=False)
        ).get_concrete_function(*specs)
        return graph_comparisons(function.graph,
                                 function.inputs[: len(specs)])

    def data_parallel(self, devices):
        """``tf.distribute.MirroredStrategy``: one replica per device,
        gradients all-reduced."""
        import tensorflow as tf

        return tf.distribute.MirroredStrategy(
            ["/" + device for device in devices])

    def replicas_in_sync(self):
        """The replicas of the ``MirroredStrategy`` in scope (else 1)."""
        import tensorflow as tf

        return tf.distribute.get_strategy().num_replicas_in_sync

    def xla_scope(self):
        """``tf.xla.experimental.jit_scope`` while a graph is traced: its
        ops form an XLA cluster, the graph's other ops keep TensorFlow's
        kernels (eager calls run as they are)."""
        import tensorflow as tf

        if tf.executing_eagerly():
            return contextlib.nullcontext()
        return tf.xla.experimental.jit_scope()
