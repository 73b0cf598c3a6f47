"""Rewrites that make a tf2onnx graph loadable by PI frameworks.

Each pass keeps the graph's function (checked by the tests with
onnxruntime) and removes a construct that CrypTen-style importers reject or
misread:

* ``keep_outputs``: the chosen outputs only, and no node, initialiser or
  value that does not lead to them (a dead ``Softmax`` or ``ArgMax`` would
  still be imported and fail);
* ``explicit_gemm_attributes``: ``alpha``, ``beta``, ``transA``, ``transB``
  written out on every ``Gemm``;
* ``symmetric_conv_padding``: a ``Conv`` with different padding before and
  after an axis (TensorFlow's ``same`` at stride 2) keeps the symmetric part
  and gets the rest as zero rows or columns concatenated to its input (the
  zeros are the input's edge times a public ``0``, so they cost nothing in
  MPC); ``Conv`` then has the same padding on both sides of each axis;
* ``squeeze_to_reshape``: ``Squeeze`` / ``Unsqueeze`` (whose axes moved
  from an attribute to an input in opset 13) become a ``Reshape`` to their
  static output shape;
* ``integer_initializers_to_constants``: integer tensors (gather indices,
  shapes) become ``Constant`` nodes, since importers turn every initialiser
  into a float parameter.
"""

import numpy as np
import onnx
from onnx import helper, numpy_helper

INTEGER_TYPES = {
    onnx.TensorProto.INT8,
    onnx.TensorProto.INT16,
    onnx.TensorProto.INT32,
    onnx.TensorProto.INT64,
    onnx.TensorProto.UINT8,
    onnx.TensorProto.UINT16,
    onnx.TensorProto.UINT32,
    onnx.TensorProto.UINT64,
}


def _replace_nodes(graph, nodes):
    nodes = list(nodes)
    del graph.node[:]
    graph.node.extend(nodes)


def keep_outputs(graph, outputs):
    """Keep the graph outputs named ``outputs`` (in that order) and drop
    every node, initialiser and value info they do not need."""
    by_name = {output.name: output for output in graph.output}
    selected = [by_name[name] for name in outputs]
    del graph.output[:]
    graph.output.extend(selected)
    needed = set(outputs)
    live = []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            live.append(node)
            needed.update(name for name in node.input if name)
    _replace_nodes(graph, reversed(live))
    initializers = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    values = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(values)


def explicit_gemm_attributes(graph):
    """Write ``alpha``, ``beta``, ``transA`` and ``transB`` on every Gemm."""
    defaults = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}
    for node in graph.node:
        if node.op_type != "Gemm":
            continue
        present = {attribute.name for attribute in node.attribute}
        node.attribute.extend(
            helper.make_attribute(name, value)
            for name, value in defaults.items()
            if name not in present
        )


def _attribute(node, name, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _zero_rows(name, tensor, axis, size, before):
    """Nodes concatenating ``size`` zero slices to ``tensor`` along ``axis``
    (before or after it); returns ``(nodes, output name)``."""
    def const(suffix, values, dtype):
        return helper.make_node(
            "Constant", [], [f"{name}/{suffix}"],
            value=numpy_helper.from_array(
                np.asarray(values, dtype), f"{name}/{suffix}"
            ),
        )

    nodes = [
        const("starts", [0], "int64"),
        const("ends", [size], "int64"),
        const("axes", [axis], "int64"),
        const("zero", 0.0, "float32"),
        helper.make_node(
            "Slice",
            [tensor, f"{name}/starts", f"{name}/ends", f"{name}/axes"],
            [f"{name}/edge"],
        ),
        helper.make_node(
            "Mul", [f"{name}/edge", f"{name}/zero"], [f"{name}/zeros"]
        ),
    ]
    parts = [f"{name}/zeros", tensor] if before else [tensor, f"{name}/zeros"]
    nodes.append(
        helper.make_node("Concat", parts, [f"{name}/padded"], axis=axis)
    )
    return nodes, f"{name}/padded"


def symmetric_conv_padding(graph):
    """Give every Conv the same padding on both sides of each spatial axis
    (the excess becomes zeros concatenated to its input)."""
    nodes = []
    for node in graph.node:
        pads = _attribute(node, "pads")
        if node.op_type != "Conv" or pads is None:
            nodes.append(node)
            continue
        rank = len(pads) // 2
        begin, end = pads[:rank], pads[rank:]
        tensor = node.input[0]
        for axis, (low, high) in enumerate(zip(begin, end)):
            if low == high:
                continue
            extra = abs(high - low)
            added, tensor = _zero_rows(
                f"{node.name}/pad{axis}", tensor, axis + 2, extra,
                before=low > high,
            )
            nodes.extend(added)
        if tensor != node.input[0]:
            symmetric = [min(low, high) for low, high in zip(begin, end)]
            node.input[0] = tensor
            for attribute in node.attribute:
                if attribute.name == "pads":
                    del attribute.ints[:]
                    attribute.ints.extend(symmetric * 2)
        nodes.append(node)
    _replace_nodes(graph, nodes)


def _shapes(model):
    graph = onnx.shape_inference.infer_shapes(model).graph
    shapes = {}
    for value in list(graph.value_info) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [
            dim.dim_value if dim.HasField("dim_value") else -1 for dim in dims
        ]
    return shapes


def squeeze_to_reshape(model):
    """Replace Squeeze and Unsqueeze by a Reshape to their output shape
    (at most one unknown dimension, written -1)."""
    graph = model.graph
    shapes = _shapes(model)
    nodes = []
    for node in graph.node:
        shape = shapes.get(node.output[0])
        if node.op_type not in ("Squeeze", "Unsqueeze") or shape is None \
                or shape.count(-1) > 1:
            nodes.append(node)
            continue
        target = f"{node.output[0]}/shape"
        nodes.append(
            helper.make_node(
                "Constant", [], [target],
                value=numpy_helper.from_array(
                    np.asarray(shape, "int64"), target
                ),
            )
        )
        nodes.append(
            helper.make_node(
                "Reshape", [node.input[0], target], list(node.output),
                name=node.name,
            )
        )
    _replace_nodes(graph, nodes)


def integer_initializers_to_constants(graph):
    """Move integer initialisers into ``Constant`` nodes at the graph start."""
    integer = [i for i in graph.initializer if i.data_type in INTEGER_TYPES]
    constants = [
        helper.make_node(
            "Constant", [], [tensor.name], value=tensor,
            name=f"{tensor.name}_const",
        )
        for tensor in integer
    ]
    kept = [i for i in graph.initializer if i.data_type not in INTEGER_TYPES]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    _replace_nodes(graph, constants + list(graph.node))


def make_pi_ready(model, outputs):
    """Apply every pass to ``model`` (an ``onnx.ModelProto``) in place."""
    explicit_gemm_attributes(model.graph)
    symmetric_conv_padding(model.graph)
    squeeze_to_reshape(model)
    integer_initializers_to_constants(model.graph)
    keep_outputs(model.graph, outputs)
    return model
