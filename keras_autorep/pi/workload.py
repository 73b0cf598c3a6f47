"""What a private inference of an exported model computes, per op class.

``onnx_workload(model.onnx)`` walks the PI-ready ONNX graph (batch 1,
static shapes) and follows which tensors depend on the image (secret) and
which only on the model (constants). Each node lands in one op class
(``keras_autorep.costs.Workload``):

* comparisons: ``Relu`` input elements, ``Max`` / ``Min`` (``max(x, 0)``
  among them), ``LeakyRelu``;
* clips: ``Clip`` (ReLU6, hard sigmoid and swish);
* max-pooling: ``MaxPool`` windows, each a tree of pairwise comparisons;
* sigmoids: ``Sigmoid`` (SiLU, squeeze-excitation gates, GELU's form);
* products of two image-dependent tensors (``Mul``: the polynomials'
  ``... * x``, SiLU's ``x * sigmoid(x)``, gates);
* products with a model constant (``Mul`` / ``Div`` by an initialiser:
  normalisation, batch-norm scale, polynomial coefficient); a product with
  a ``Constant`` node of zeros (the padding ``onnx_pi`` adds) is free;
* linear layers (``Conv``, depthwise and grouped ones included, ``Gemm``,
  ``MatMul``) and means (``ReduceMean``, ``GlobalAveragePool``,
  ``AveragePool``).

For each class it keeps elements out, elements in (both operands), nodes
and what CHEETAH's messages depend on (``chunks``, ``blocks``).
Additions, gathers, concatenations, reshapes and transposes are free in
every protocol priced here and are not counted.
``keras_autorep.costs.sites.all_relu_workload(workload, spec)`` is
the same network with every site its activation (the polynomial branches
of the spec's sites removed), so an export is priced against its
all-ReLU version without a second graph.
"""

import numpy as np
import onnx
from onnx import numpy_helper

from keras_autorep.costs.workload import (
    Workload,
    blocks,
    chunks,
    comparison,
    constant_product,
    max_levels,
    secret_product,
)

COMPARISON_OPS = ("Relu", "LeakyRelu", "PRelu")
LINEAR_OPS = ("Conv", "Gemm", "MatMul")
MEAN_OPS = ("ReduceMean", "GlobalAveragePool", "AveragePool")
PRODUCT_OPS = ("Mul", "Div")


def _shapes(model):
    inferred = onnx.shape_inference.infer_shapes(model).graph
    shapes = {}
    for value in (list(inferred.value_info) + list(inferred.input)
                  + list(inferred.output)):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(
            d.dim_value if d.HasField("dim_value") else None for d in dims
        )
    for tensor in inferred.initializer:
        shapes[tensor.name] = tuple(tensor.dims)
    for node in inferred.node:
        if node.op_type == "Constant":
            value = numpy_helper.to_array(node.attribute[0].t)
            shapes[node.output[0]] = value.shape
    return shapes


def _size(shapes, name):
    shape = shapes.get(name)
    if shape is None or None in shape:
        raise ValueError(
            f"tensor {name!r} has no static shape (export with batch_size=1)"
        )
    return int(np.prod(shape, dtype=np.int64))


def _attribute(node, name, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _max_pool(node, out):
    window = int(np.prod(_attribute(node, "kernel_shape", [1])))
    levels = max_levels(window, out)
    return Workload(max_windows=out, max_comparisons=out * (window - 1),
                    max_nodes=1, max_levels=len(levels),
                    max_chunks=sum(chunks(n) for n in levels))


def _node_workload(node, shapes, secret, zeros):
    inputs = [name for name in node.input if name]
    out = _size(shapes, node.output[0])
    op = node.op_type
    if op in COMPARISON_OPS:
        return comparison(_size(shapes, inputs[0]))
    if op in ("Max", "Min"):
        return comparison(out * (len(inputs) - 1))
    if op == "Clip":
        return Workload(clips=out, clip_nodes=1, clip_chunks=chunks(out))
    if op == "MaxPool":
        return _max_pool(node, out)
    if op == "Sigmoid":
        return Workload(sigmoids=out, sigmoid_nodes=1,
                        sigmoid_blocks=blocks(out))
    operands = sum(_size(shapes, name) for name in inputs[:2])
    if op in LINEAR_OPS:
        if op == "Conv":
            per_output = int(np.prod(shapes[inputs[1]][1:]))
        else:
            per_output = shapes[inputs[0]][-1]
        return Workload(linear_out=out, linear_in=operands,
                        linear_macs=out * per_output, linear_nodes=1,
                        truncation_chunks=chunks(out))
    if op in MEAN_OPS:
        return Workload(means_out=out, mean_nodes=1,
                        truncation_chunks=chunks(out))
    if op not in PRODUCT_OPS or zeros.intersection(inputs):
        return Workload()
    if all(name in secret for name in inputs):
        return secret_product(out, operands)
    return constant_product(out, operands)


def onnx_workload(model):
    """The ``Workload`` of an ONNX file or ``onnx.ModelProto`` (batch 1)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    shapes = _shapes(model)
    secret = {value.name for value in model.graph.input}
    zeros = {
        node.output[0] for node in model.graph.node
        if node.op_type == "Constant" and node.attribute[0].name == "value"
        and not numpy_helper.to_array(node.attribute[0].t).any()
    }
    total = Workload()
    for node in model.graph.node:
        if not secret.intersection(node.input):
            continue
        total += _node_workload(node, shapes, secret, zeros)
        secret.update(node.output)
    return total
