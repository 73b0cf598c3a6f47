"""Which ONNX ops the two-party runtimes run, checked on an export.

``CRYPTEN_OPS``: the ops CrypTen 0.4.1's ONNX importer turns into modules
(``crypten.nn.onnx_converter``; ``Pad`` is left out: the importer
requires an explicit ``mode`` and reads ``pads`` in torch's order, so the
PI-ready graph has none). ``SPU_OPS``: the ops
``keras_autorep.pi.stablehlo`` translates to StableHLO for SPU.
``unsupported_ops(model)`` names, per runtime, each op of a graph it
cannot run and why, so an export says so before any run (``export_onnx``
warns; ``pi measure`` refuses).
"""

CRYPTEN_OPS = frozenset({
    "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat",
    "Constant", "ConstantOfShape", "Conv", "Div", "Dropout", "Equal", "Erf",
    "Exp", "Expand", "Flatten", "Gather", "Gemm", "GlobalAveragePool",
    "LogSoftmax", "MatMul", "MaxPool", "Mul", "Pow", "Range", "ReduceMean",
    "ReduceSum", "Relu", "Reshape", "Shape", "Sigmoid", "Slice", "Softmax",
    "Sqrt", "Squeeze", "Sub", "Transpose", "Unsqueeze", "Where",
})
SPU_OPS = frozenset({
    "Add", "AveragePool", "Clip", "Concat", "Constant", "Conv", "Div",
    "Flatten", "Gather", "Gemm", "GlobalAveragePool", "Identity",
    "LeakyRelu", "MatMul", "Max", "MaxPool", "Min", "Mul", "ReduceMean",
    "Relu", "Reshape", "Sigmoid", "Slice", "Sub", "Transpose",
})
RUNTIME_OPS = {
    "crypten": (CRYPTEN_OPS, "CrypTen 0.4.1's ONNX importer has no {op}"),
    "spu": (SPU_OPS, "keras_autorep.pi.stablehlo has no StableHLO "
                     "translation of {op}"),
}


def unsupported_ops(model):
    """``{runtime: [(op, node name, why), ...]}`` for every runtime
    (``"crypten"``, ``"spu"``) that cannot run a node of ``model`` (an
    ``onnx.ModelProto``); empty when all of them run it."""
    found = {}
    for runtime, (ops, why) in RUNTIME_OPS.items():
        missing = {}
        for node in model.graph.node:
            if node.op_type not in ops:
                missing.setdefault(node.op_type, node.name)
        if missing:
            found[runtime] = [(op, name, why.format(op=op))
                              for op, name in missing.items()]
    return found


def describe_unsupported(found):
    """One line naming each runtime's unsupported ops and why (``""``
    when there are none)."""
    return "; ".join(
        f"{runtime} cannot run it: " + ", ".join(
            f"{op} (node {name!r}: {why})" for op, name, why in missing)
        for runtime, missing in found.items())
