"""Freezing a TensorFlow concrete function (variables become constants),
and the graph of a function that freezing keeps as a function."""

from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2,
)
from tensorflow.python.framework.function_def_to_graph import (
    function_def_to_graph,
)


def frozen_graph_def(function):
    """The ``GraphDef`` of ``function`` with its variables as constants and
    its nested functions inlined, as the TF runtime and tf2onnx see it."""
    return convert_variables_to_constants_v2(function).graph.as_graph_def()


def function_graph(function_def, input_shapes):
    """A graph of the library function ``function_def`` (e.g. one compiled
    by XLA, which freezing does not inline), its inputs as placeholders of
    ``input_shapes``; its inputs are ``graph.inputs``."""
    return function_def_to_graph(function_def, input_shapes=input_shapes)
