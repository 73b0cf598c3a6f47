"""ONNX export (through tf2onnx) for private-inference frameworks.

The ONNX graph has the SavedModel's contract: input ``image`` (raw pixels
0..255, ``float32``, NHWC), outputs ``logits``, ``probabilities`` and
``class_id`` (int64), in that order, or the subset asked for. The hardened
layers are traced in their PI form (a ``gather_form`` copy of the model):
``Gather`` of the kept positions -> ``Relu`` -> ``Concat`` with the
polynomial part -> ``Gather`` back, so a PI framework pays for exactly the
kept ReLUs and needs no scatter op.

For PI frameworks (CrypTen-style importers), ``batch_size=1`` gives a fully
static graph, and ``keras_autorep.export.onnx_pi`` rewrites what those
importers reject or misread: dead nodes, implicit Gemm attributes,
asymmetric Conv padding, zero ``Pad``, secret ``Clip`` bounds, ``Erf``,
Squeeze/Unsqueeze, integer initialisers. An op that a two-party runtime
still cannot run is named in a warning (``export.pi_ops``).
"""

import os
import uuid
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from keras_autorep.export.contract import (
    DEFAULT_INPUT_SCALE,
    DEFAULT_OPSET,
    INPUT_NAME,
    OUTPUT_NAMES,
    exportable_model,
)
from keras_autorep.export.onnx_pi import make_pi_ready
from keras_autorep.export.pi_ops import describe_unsupported, unsupported_ops
from keras_autorep.export.saved_model import serving_function
from keras_autorep.graph.convert import gather_form


def _check_outputs(outputs):
    outputs = tuple(outputs)
    if (
        not outputs
        or len(set(outputs)) != len(outputs)
        or not set(outputs) <= set(OUTPUT_NAMES)
    ):
        raise ValueError(
            f"outputs must be distinct names among {OUTPUT_NAMES}, got "
            f"{outputs!r}"
        )
    return outputs


def export_onnx(
    model,
    path,
    batch_size=None,
    input_scale=DEFAULT_INPUT_SCALE,
    opset=DEFAULT_OPSET,
    outputs=("logits",),
):
    """Export a model to ONNX with tf2onnx.

    Args:
        model: inference Keras model (hardened or plain) taking images
            scaled to [0, 1] and returning logits.
        path: the ``.onnx`` file to write (parent folders are created).
        batch_size: ``None`` for a dynamic batch axis; an integer (``1`` for
            PI frameworks) makes every shape in the graph static.
        input_scale: factor from raw pixels to the model's input scale.
        opset: ONNX opset (default 13, widely supported).
        outputs: which of ``("logits", "probabilities", "class_id")`` to
            keep, in this order (``("logits",)`` for a PI framework that
            reads the first output only).

    Returns:
        ``pathlib.Path`` of the written file.
    """
    import tf2onnx

    model = exportable_model(model)

    outputs = _check_outputs(outputs)
    if batch_size is not None and (
        isinstance(batch_size, bool)
        or int(batch_size) != batch_size
        or batch_size < 1
    ):
        raise ValueError(
            f"batch_size must be None or an integer >= 1, got {batch_size!r}"
        )
    pi_model = gather_form(model)  # alive until frozen: it owns variables
    concrete = serving_function(
        pi_model, input_scale, batch_size, checks=False
    ).get_concrete_function()
    # tf2onnx.convert.from_function would make every captured tensor (e.g.
    # the constant mean of a Normalization layer) an extra graph input; name
    # the signature's input only, so freezing turns captures into constants.
    input_names = [concrete.inputs[0].name]
    output_names = [tensor.name for tensor in concrete.outputs]
    proto, _ = tf2onnx.convert.from_graph_def(
        tf2onnx.tf_loader.from_function(concrete, input_names, output_names),
        name=concrete.name,
        input_names=input_names,
        output_names=output_names,
        opset=opset,
        tensors_to_rename=tf2onnx.convert.tensor_names_from_structed(
            concrete, input_names, output_names
        ),
    )
    if [value.name for value in proto.graph.input] != [INPUT_NAME]:
        raise RuntimeError(
            "tf2onnx produced graph inputs "
            f"{[value.name for value in proto.graph.input]}, expected "
            f"[{INPUT_NAME!r}]"
        )
    make_pi_ready(proto, outputs)
    onnx.checker.check_model(proto)
    unsupported = describe_unsupported(unsupported_ops(proto))
    if unsupported:
        warnings.warn(f"{Path(path).name}: {unsupported}", stacklevel=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp, whose 0600 mode would stay on the file: honour the umask.
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        onnx.save(proto, str(temporary))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def _static_shapes(graph):
    shapes = {}
    values = list(graph.value_info) + list(graph.input) + list(graph.output)
    for value in values:
        shapes[value.name] = [
            dim.dim_value if dim.HasField("dim_value") else None
            for dim in value.type.tensor_type.shape.dim
        ]
    for tensor in graph.initializer:
        shapes[tensor.name] = list(tensor.dims)
    return shapes


def _is_zero_constant(name, constants):
    value = constants.get(name)
    return value is not None and not np.any(value)


def onnx_relu_elements(model):
    """ReLU elements per example computed by an ONNX graph.

    Runs ONNX shape inference and sums, over ``Relu`` nodes and ``Max``
    nodes with a zero constant operand (``max(x, 0)``), the number of
    elements of their output without the first (batch) axis. Other
    comparisons (``LeakyRelu``, ``Clip`` for relu6, ``MaxPool``) are not
    ReLUs.

    Args:
        model: path of an ``.onnx`` file, or an ``onnx.ModelProto``.

    Returns:
        ``int``.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    graph = onnx.shape_inference.infer_shapes(model).graph
    for node in graph.node:
        attributes = node.attribute
        if any(a.type == onnx.AttributeProto.GRAPH for a in attributes):
            raise ValueError(
                f"node {node.name!r} ({node.op_type}) has a subgraph; "
                "onnx_relu_elements supports straight-line graphs only"
            )
    shapes = _static_shapes(graph)
    constants = {
        tensor.name: numpy_helper.to_array(tensor)
        for tensor in graph.initializer
    }
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(
                        attribute.t)
    total = 0
    for node in graph.node:
        is_relu = node.op_type == "Relu" or (
            node.op_type == "Max"
            and any(_is_zero_constant(name, constants) for name in node.input)
        )
        if not is_relu:
            continue
        shape = shapes.get(node.output[0])
        if shape is None or not shape or None in shape[1:]:
            raise ValueError(
                f"{node.op_type} node {node.name!r}: the per-example size of "
                f"its output {node.output[0]!r} is unknown (shape {shape})"
            )
        total += int(np.prod(shape[1:]))
    return total
