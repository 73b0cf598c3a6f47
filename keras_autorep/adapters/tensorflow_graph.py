"""Freezing a TensorFlow concrete function (variables become constants)."""

from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2,
)


def frozen_graph_def(function):
    """The ``GraphDef`` of ``function`` with its variables as constants and
    its nested functions inlined, as the TF runtime and tf2onnx see it."""
    return convert_variables_to_constants_v2(function).graph.as_graph_def()
