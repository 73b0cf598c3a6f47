"""Rewrites that make a tf2onnx graph loadable by PI frameworks.

Each pass keeps the graph's function (checked by the tests with
onnxruntime) and removes a construct that CrypTen-style importers reject or
misread:

* ``keep_outputs``: the chosen outputs only, and no node, initialiser or
  value that does not lead to them (a dead ``Softmax`` or ``ArgMax`` would
  still be imported and fail);
* ``explicit_attributes``: ``alpha``, ``beta``, ``transA``, ``transB``
  written out on every ``Gemm``; ``strides``, ``pads``, ``dilations`` on
  every ``Conv`` (CrypTen asserts them), ``strides`` on pooling;
* ``symmetric_conv_padding``: a ``Conv`` with different padding before and
  after an axis (TensorFlow's ``same`` at stride 2) keeps the symmetric part
  and gets the rest as zero rows or columns concatenated to its input (the
  zeros are the input's edge times a public ``0``, so they cost nothing in
  MPC); ``Conv`` then has the same padding on both sides of each axis;
* ``pads_as_zeros``: a zero ``Pad`` (``ZeroPadding2D``, in front of the
  stride-2 depthwise convolutions of MobileNet and EfficientNet and of
  ResNet's max-pooling) becomes the same zero rows and columns, concatenated:
  CrypTen 0.4.1 requires an explicit ``mode`` and reads ``pads`` in torch's
  order, and SPU needs no pad op at all;
* ``public_clip_bounds``: the bounds of ``Clip`` (ReLU6, hard sigmoid) are
  ``Constant`` nodes, public: CrypTen reads them as plain numbers, and a
  secret-shared bound would not be one;
* ``erf_as_sigmoid``: ``Erf`` and ``Erfc`` (exact GELU: TensorFlow writes
  ``Erfc``, which opset 13 does not even define) become the logistic form
  ``erf(z) ~ 2 sigmoid(2 z (a + b z^2)) - 1`` of GELU's tanh approximation
  (at most 3.6e-4 from ``erf``; GELU within 4.8e-4): CrypTen's ``Erf`` is a
  Taylor series that diverges beyond ``|z| ~ 2``, while every runtime
  evaluates ``Sigmoid`` over the whole line;
* ``neg_as_difference``: ``Neg(x)`` (in exact GELU) becomes ``x * 0 - x``,
  CrypTen having no ``Neg``;
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


def explicit_attributes(graph):
    """Write the defaulted attributes out: ``alpha``, ``beta``, ``transA``,
    ``transB`` on every Gemm; ``strides``, ``pads``, ``dilations`` on every
    Conv, and ``strides`` on every pooling node."""
    for node in graph.node:
        present = {attribute.name for attribute in node.attribute}
        kernel = _attribute(node, "kernel_shape", [])
        spatial = {
            "strides": [1] * len(kernel),
            "pads": [0] * 2 * len(kernel),
            "dilations": [1] * len(kernel),
        }
        defaults = {
            "Gemm": {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0},
            "Conv": spatial,
            "MaxPool": {"strides": spatial["strides"]},
            "AveragePool": {"strides": spatial["strides"]},
        }.get(node.op_type, {})
        node.attribute.extend(
            helper.make_attribute(name, value)
            for name, value in defaults.items()
            if name not in present and value != []
        )


def _attribute(node, name, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _constant(name, values, dtype):
    """A ``Constant`` node whose output is ``name``."""
    return helper.make_node(
        "Constant", [], [name],
        value=numpy_helper.from_array(np.asarray(values, dtype), name),
    )


def _zero_rows(name, tensor, axis, before, after):
    """Nodes concatenating ``before`` and ``after`` zero slices to
    ``tensor`` along ``axis`` (one slice of its edge times a public ``0``,
    repeated); returns ``(nodes, output name)``."""
    nodes = [
        _constant(f"{name}/starts", [0], "int64"),
        _constant(f"{name}/ends", [1], "int64"),
        _constant(f"{name}/axes", [axis], "int64"),
        _constant(f"{name}/zero", 0.0, "float32"),
        helper.make_node(
            "Slice",
            [tensor, f"{name}/starts", f"{name}/ends", f"{name}/axes"],
            [f"{name}/edge"],
        ),
        helper.make_node(
            "Mul", [f"{name}/edge", f"{name}/zero"], [f"{name}/zeros"]
        ),
    ]
    # One Mul per slice: CrypTen's graph runner takes no node that reads
    # the same tensor twice.
    zeros = [f"{name}/zeros"] + [f"{name}/zeros{i}"
                                 for i in range(1, before + after)]
    nodes.extend(helper.make_node("Mul", [f"{name}/edge", f"{name}/zero"],
                                  [copy]) for copy in zeros[1:])
    parts = zeros[:before] + [tensor] + zeros[before:]
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
            symmetric = min(low, high)
            added, tensor = _zero_rows(
                f"{node.name}/pad{axis}", tensor, axis + 2,
                low - symmetric, high - symmetric,
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


def _constants(graph):
    """``{name: array}`` of the initialisers and ``Constant`` nodes."""
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def pads_as_zeros(graph):
    """Replace every zero ``Pad`` (constant mode, value 0, no cropping) by
    zero slices concatenated along each padded axis."""
    constants = _constants(graph)
    nodes, renamed = [], {}
    for node in graph.node:
        inputs = list(node.input) + ["", "", ""]
        pads = constants.get(inputs[1]) if node.op_type == "Pad" else None
        if (pads is None or np.any(constants.get(inputs[2], 0))
                or _attribute(node, "mode", b"constant") != b"constant"
                or np.any(pads < 0)):
            nodes.append(node)
            continue
        rank = len(pads) // 2
        tensor = node.input[0]
        for axis in range(rank):
            if pads[axis] or pads[axis + rank]:
                added, tensor = _zero_rows(
                    f"{node.name}/pad{axis}", tensor, axis,
                    int(pads[axis]), int(pads[axis + rank]))
                nodes.extend(added)
        renamed[node.output[0]] = tensor
    for node in nodes:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    _replace_nodes(graph, nodes)


def public_clip_bounds(graph):
    """Make the ``min`` / ``max`` initialisers of every ``Clip``
    ``Constant`` nodes (public numbers)."""
    bounds = {name for node in graph.node if node.op_type == "Clip"
              for name in node.input[1:] if name}
    moved = [t for t in graph.initializer if t.name in bounds]
    kept = [t for t in graph.initializer if t.name not in bounds]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    constants = [helper.make_node("Constant", [], [t.name], value=t,
                                  name=f"{t.name}_const") for t in moved]
    _replace_nodes(graph, constants + list(graph.node))


# erf(z) ~ tanh(z (A + B z^2)): GELU's tanh approximation, written for erf
# (A = 2 / sqrt(pi), B = 0.044715 * 4 / sqrt(pi)); tanh(u) = 2 sigmoid(2u) - 1.
ERF_A = 2.0 / np.sqrt(np.pi)
ERF_B = 0.044715 * 4.0 / np.sqrt(np.pi)


def erf_as_sigmoid(model):
    """Replace ``Erf`` by ``2 sigmoid(2 z (A + B z^2)) - 1`` and ``Erfc``
    by ``2 sigmoid(-2 z (A + B z^2))`` (no node reads a tensor twice, as
    CrypTen requires: ``2 s`` is ``s`` plus a reshaped copy of it)."""
    graph = model.graph
    if not any(node.op_type in ("Erf", "Erfc") for node in graph.node):
        return
    shapes = _shapes(model)
    nodes = []
    for node in graph.node:
        if node.op_type not in ("Erf", "Erfc"):
            nodes.append(node)
            continue
        name, z = node.name or node.output[0], node.input[0]
        sign = 1.0 if node.op_type == "Erf" else -1.0

        def tensor(suffix):
            return f"{name}/{suffix}"

        graph.initializer.extend(
            numpy_helper.from_array(np.asarray(v, "float32"), tensor(k))
            for k, v in (("b", 2 * sign * ERF_B), ("a", 2 * sign * ERF_A)))
        twice = tensor("twice") if sign > 0 else node.output[0]
        nodes += [
            helper.make_node("Mul", [z, tensor("b")], [tensor("bz")]),
            helper.make_node("Mul", [tensor("bz"), z], [tensor("bz2")]),
            helper.make_node("Add", [tensor("bz2"), tensor("a")],
                             [tensor("slope")]),
            helper.make_node("Mul", [tensor("slope"), z], [tensor("u")]),
            helper.make_node("Sigmoid", [tensor("u")], [tensor("s")]),
            _constant(tensor("shape"), shapes[z], "int64"),
            helper.make_node("Reshape", [tensor("s"), tensor("shape")],
                             [tensor("s_copy")]),
            helper.make_node("Add", [tensor("s"), tensor("s_copy")],
                             [twice]),
        ]
        if sign > 0:
            graph.initializer.append(numpy_helper.from_array(
                np.asarray(1.0, "float32"), tensor("one")))
            nodes.append(helper.make_node(
                "Sub", [twice, tensor("one")], [node.output[0]]))
    _replace_nodes(graph, nodes)


def neg_as_difference(graph):
    """Replace ``Neg(x)`` by ``x * 0 - x`` (CrypTen has no ``Neg``; the
    zeros are free, as in the padding)."""
    nodes = []
    for node in graph.node:
        if node.op_type != "Neg":
            nodes.append(node)
            continue
        zero, zeros = f"{node.output[0]}/zero", f"{node.output[0]}/zeros"
        nodes += [
            _constant(zero, 0.0, "float32"),
            helper.make_node("Mul", [node.input[0], zero], [zeros]),
            helper.make_node("Sub", [zeros, node.input[0]],
                             list(node.output), name=node.name),
        ]
    _replace_nodes(graph, nodes)


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
        nodes.append(_constant(target, shape, "int64"))
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
    explicit_attributes(model.graph)
    symmetric_conv_padding(model.graph)
    pads_as_zeros(model.graph)
    public_clip_bounds(model.graph)
    erf_as_sigmoid(model)
    neg_as_difference(model.graph)
    squeeze_to_reshape(model)
    integer_initializers_to_constants(model.graph)
    keep_outputs(model.graph, outputs)
    return model
