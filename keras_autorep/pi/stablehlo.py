"""The exported ONNX graph as StableHLO text, for SPU.

``onnx_stablehlo(model.onnx)`` interprets the PI-ready ONNX graph with
``jax.numpy`` and returns ``jax.jit(logits).lower(image).as_text()`` for
one raw-pixel image. SPU thus runs the very graph CrypTen runs (batch norm
folded into the convolutions by tf2onnx, the sites' gather -> ReLU /
polynomial -> scatter form), so one ``Workload`` prices every runtime.

SPU makes a program's arguments secret and what it closes over public: the
image is the one argument, the initialisers (weights, coefficients, kept
positions) are public constants. SPU 0.9.5's I/O has no party-private
visibility, and secret-shared weights would make every layer a secret
matrix product (megabytes each under CHEETAH); an SPU run therefore prices
what the image's privacy costs: comparisons, secret products, truncations.
CrypTen runs keep the model secret-shared instead.

SPU 0.9.5 pins jax 0.4.34; the project's jax (0.10) emits the same core
StableHLO ops (convolution, dot_general, gather, ...), which SPU's parser
reads: the tests compile and run exports through it.
"""

import functools

import numpy as np
import onnx
from onnx import numpy_helper

STABLEHLO_FILENAME = "model.stablehlo.mlir"


def node_attributes(node):
    """``{name: value}`` of an ONNX node's attributes."""
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def slice_tensor(x, starts, ends, axes=None, steps=None):
    """ONNX ``Slice`` of an array (NumPy or ``jax.numpy``)."""
    index = [slice(None)] * x.ndim
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[int(axis)] = slice(int(start), int(end), int(step))
    return x[tuple(index)]


def _conv(lax, x, w, b=None, strides=None, pads=None, dilations=None,
          group=1, **_):
    rank = w.ndim - 2
    pads = pads or [0] * (2 * rank)
    y = lax.conv_general_dilated(
        x, w, tuple(strides or [1] * rank),
        [(pads[i], pads[i + rank]) for i in range(rank)],
        rhs_dilation=tuple(dilations or [1] * rank),
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        feature_group_count=group,
    )
    return y if b is None else y + b.reshape((1, -1) + (1,) * rank)


def _gemm(jnp, a, b, c=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    a = a.T if transA else a
    b = b.T if transB else b
    y = alpha * (a @ b)
    return y if c is None else y + beta * c


def _pool(lax, jnp, x, kind, kernel_shape, strides=None, pads=None, **_):
    rank = len(kernel_shape)
    pads = pads or [0] * (2 * rank)
    window = (1, 1) + tuple(kernel_shape)
    stride = (1, 1) + tuple(strides or [1] * rank)
    padding = [(0, 0), (0, 0)] + [
        (pads[i], pads[i + rank]) for i in range(rank)
    ]
    if kind == "max":
        return lax.reduce_window(x, -jnp.inf, lax.max, window, stride,
                                 padding)
    total = lax.reduce_window(x, 0.0, lax.add, window, stride, padding)
    return total / float(np.prod(kernel_shape))


def _operations(jax):
    jnp, lax = jax.numpy, jax.lax

    def reduce_mean(x, axes=None, keepdims=1):
        return jnp.mean(x, axis=tuple(axes) if axes is not None else None,
                        keepdims=bool(keepdims))

    def mul(a, b):
        # The zero rows of onnx_pi's padding (an edge times a public 0):
        # zeros outright, so SPU pays no truncation for them.
        if isinstance(b, np.ndarray) and not b.any():
            return jnp.zeros(np.broadcast_shapes(a.shape, b.shape), a.dtype)
        return a * b

    return {
        "Add": lambda a, b: a + b,
        "Sub": lambda a, b: a - b,
        "Mul": mul,
        "Div": lambda a, b: a / b,
        "Relu": jax.nn.relu,
        "LeakyRelu": lambda x, alpha=0.01: jnp.where(x >= 0, x, alpha * x),
        "Sigmoid": jax.nn.sigmoid,
        "Max": lambda *xs: functools.reduce(jnp.maximum, xs),
        "Min": lambda *xs: functools.reduce(jnp.minimum, xs),
        "Clip": lambda x, low=None, high=None: jnp.clip(x, low, high),
        "Conv": lambda *args, **kw: _conv(lax, *args, **kw),
        "Gemm": lambda *args, **kw: _gemm(jnp, *args, **kw),
        "MatMul": lambda a, b: a @ b,
        "Gather": lambda x, i, axis=0: x[
            (slice(None),) * (axis % x.ndim) + (np.asarray(i),)],
        "Concat": lambda *xs, axis: jnp.concatenate(xs, axis=axis),
        "Reshape": lambda x, shape, **_: jnp.reshape(
            x, [int(d) for d in shape]),
        "Transpose": lambda x, perm=None: jnp.transpose(x, perm),
        "Slice": slice_tensor,
        "Flatten": lambda x, axis=1: x.reshape(
            int(np.prod(x.shape[:axis])), -1),
        "Identity": lambda x: x,
        "ReduceMean": reduce_mean,
        "GlobalAveragePool": lambda x: jnp.mean(
            x, axis=tuple(range(2, x.ndim)), keepdims=True),
        "MaxPool": lambda x, **kw: _pool(lax, jnp, x, "max", **kw),
        "AveragePool": lambda x, **kw: _pool(lax, jnp, x, "average", **kw),
    }


def translated_ops():
    """The ONNX ops ``onnx_function`` translates (``Constant`` included):
    ``keras_autorep.export.pi_ops.SPU_OPS``, which the export checks."""
    import jax

    return frozenset(_operations(jax)) | {"Constant"}


def onnx_function(model):
    """``logits(image)`` in ``jax.numpy`` for an ``onnx.ModelProto``."""
    import jax

    operations = _operations(jax)
    constants = {t.name: numpy_helper.to_array(t)
                 for t in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        attributes = node_attributes(node)
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(
                attributes["value"])
            continue
        if node.op_type not in operations:
            raise ValueError(
                f"ONNX op {node.op_type} (node {node.name!r}) has no "
                "StableHLO translation here"
            )
        nodes.append((node, attributes))
    input_name = model.graph.input[0].name
    output_name = model.graph.output[0].name

    def logits(image):
        values = dict(constants, **{input_name: image})
        for node, attributes in nodes:
            arguments = [values[name] if name else None
                         for name in node.input]
            values[node.output[0]] = operations[node.op_type](
                *arguments, **attributes)
        return values[output_name]

    return logits


def onnx_stablehlo(path):
    """StableHLO text of the ONNX file's graph (batch-1 image argument)."""
    import jax

    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    image = np.zeros([d.dim_value for d in dims], "float32")
    return jax.jit(onnx_function(model)).lower(image).as_text()
