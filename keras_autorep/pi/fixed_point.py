"""The exported graph in the runtimes' fixed-point formats.

CrypTen and SPU compute on integers of a 64-bit ring: a real ``x`` is the
integer ``x * 2^f`` (``f`` fractional bits: ``FORMATS``). An overflow
there is no NaN but a wrong answer, so ``fixed_point_run(model.onnx,
pixels, format)`` evaluates the PI-ready ONNX graph (raw pixels, batch 1,
run on a batch) op by op in NumPy, on float64 values held to the grid
``2^-f``, and tracks every intermediate against the ring:

* the image and every constant (weights, coefficients) are rounded to the
  grid;
* a product (``Mul``, ``Div``, ``Conv``, ``Gemm``, ``MatMul``) is computed
  exactly from its rounded operands (a ``Div`` as the product with the
  rounded reciprocal), then truncated to ``f`` fractional bits (floor), as
  the runtimes truncate after a multiplication; before the truncation it
  carries ``2f`` fractional bits, so its magnitude must stay below
  ``2^(63 - 2f)`` (``product_bound``). A bias is added after the
  truncation. A product with a constant of integers is exact;
* a mean (``ReduceMean``, ``GlobalAveragePool``) is the exact sum divided
  by the public count, truncated;
* additions, comparisons (``Relu``, ``Max``, ...) and data movement
  (``Reshape``, ``Gather``, ``Concat``, ...) are exact on the grid;
* ``Sigmoid`` is evaluated exactly and rounded to the grid.

Every value must stay below ``2^(63 - f)`` (``value_bound``). Not
emulated: a value out of the ring is reported, not wrapped; the runtimes'
approximations of non-linear functions; the share-wise truncation's
off-by-one and its failure, whose probability grows with the magnitude
truncated, which is why ``FixedPointRun.fits`` asks for ``MARGIN_BITS`` of
headroom.
"""

import dataclasses
import math

import numpy as np
import onnx
from onnx import numpy_helper

from keras_autorep.pi.stablehlo import node_attributes, slice_tensor
from keras_autorep.pi.workload import LINEAR_OPS, MEAN_OPS, PRODUCT_OPS

RING_BITS = 64
# The bits of headroom below the ring's bounds a model must keep.
MARGIN_BITS = 8
# The input scales of the check: the images as they are, and 2x brighter.
CHECK_SCALES = (1.0, 2.0)
CHUNK = 16  # images evaluated at once


@dataclasses.dataclass(frozen=True)
class FixedPointFormat:
    """A runtime's fixed-point encoding: ``fractional_bits`` in a
    ``RING_BITS`` ring of signed integers."""

    name: str
    fractional_bits: int

    @property
    def value_bound(self):
        """The largest magnitude a stored value can have."""
        return 2.0 ** (RING_BITS - 1 - self.fractional_bits)

    @property
    def product_bound(self):
        """The largest magnitude of a product before its truncation."""
        return 2.0 ** (RING_BITS - 1 - 2 * self.fractional_bits)


FORMATS = {
    "crypten": FixedPointFormat("CrypTen (16 fractional bits, 64-bit ring)",
                                16),
    "spu-fm64": FixedPointFormat("SPU FM64 (18 fractional bits, 64-bit "
                                 "ring)", 18),
}


@dataclasses.dataclass
class FixedPointRun:
    """What a fixed-point evaluation found (``fixed_point_run``).

    Attributes:
        logits: ``(N, classes)``, in the format (``None``: exact float64).
        largest_value, largest_value_node: the largest stored magnitude
            and the node that computed it.
        largest_product, largest_product_node: the same for products
            before their truncation.
    """

    format: FixedPointFormat
    logits: np.ndarray
    largest_value: float = 0.0
    largest_value_node: str = None
    largest_product: float = 0.0
    largest_product_node: str = None

    def record(self, name, value, product=False):
        """Track ``value``, the output of node ``name``."""
        largest = float(np.max(np.abs(value), initial=0.0))
        if not math.isfinite(largest):
            largest = math.inf
        if product and largest >= self.largest_product:
            self.largest_product, self.largest_product_node = largest, name
        if not product and largest >= self.largest_value:
            self.largest_value, self.largest_value_node = largest, name

    @property
    def headroom_bits(self):
        """``log2`` of the smallest ratio of a bound to its largest
        magnitude (negative: out of the ring)."""
        ratios = [bound / max(largest, 1e-300) for bound, largest in (
            (self.format.value_bound, self.largest_value),
            (self.format.product_bound, self.largest_product))]
        return math.log2(min(ratios)) if all(ratios) else -math.inf

    @property
    def fits(self):
        """Whether the logits are finite and every magnitude stays
        ``MARGIN_BITS`` below its bound."""
        return (bool(np.all(np.isfinite(self.logits)))
                and self.headroom_bits >= MARGIN_BITS)

    def summary(self):
        """The figures as a JSON-ready dict."""
        finite = np.all(np.isfinite(self.logits), axis=-1)
        return dict(
            largest_value=self.largest_value,
            largest_value_node=self.largest_value_node,
            largest_product=self.largest_product,
            largest_product_node=self.largest_product_node,
            headroom_bits=self.headroom_bits, fits=self.fits,
            finite=float(np.mean(finite)),
            max_abs_logit=float(np.max(np.abs(self.logits[finite]),
                                       initial=0.0)))


def _constants(graph):
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _conv(x, w, strides=None, pads=None, dilations=None, group=1, **_):
    """NCHW convolution (``OIHW`` kernel, no bias): one product per kernel
    position, each a matrix product over the channels of a group."""
    batch, channels = x.shape[:2]
    out, per_group, kh, kw = w.shape
    sh, sw = strides or (1, 1)
    dh, dw = dilations or (1, 1)
    top, left, bottom, right = pads or (0, 0, 0, 0)
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    height = (x.shape[2] - (kh - 1) * dh - 1) // sh + 1
    width = (x.shape[3] - (kw - 1) * dw - 1) // sw + 1
    x = x.reshape(batch, group, per_group, *x.shape[2:])
    kernel = w.reshape(group, out // group, per_group, kh, kw)
    y = 0.0
    for i in range(kh):
        for j in range(kw):
            shifted = x[..., i * dh:i * dh + sh * (height - 1) + 1:sh,
                        j * dw:j * dw + sw * (width - 1) + 1:sw]
            if per_group == 1:  # depthwise: a product per channel
                y = y + shifted * kernel[None, :, :, 0, i, j, None, None]
            else:
                y = y + np.einsum("ngchw,gmc->ngmhw", shifted,
                                  kernel[..., i, j], optimize=True)
    return y.reshape(batch, out, height, width)


class _BatchAxisDropped(Exception):
    """A reshape of the batch-1 graph drops its batch axis: it can only
    be evaluated one image at a time."""


def _reshape(x, shape, **_):
    """Reshape to ``shape``, its batch-1 leading dimension the batch's."""
    shape = [int(d) for d in shape]
    if shape and shape[0] == 1:  # the batch's, whatever x's axes are
        known = all(d > 0 for d in shape[1:])
        shape[0] = x.size // int(np.prod(shape[1:])) if known else x.shape[0]
    elif x.shape[0] != 1:
        raise _BatchAxisDropped
    return x.reshape(shape)


def _pad(x, pads, value=None, mode=b"constant", **_):
    half = len(pads) // 2
    widths = [(int(pads[i]), int(pads[i + half])) for i in range(half)]
    fill = 0.0 if value is None else float(np.asarray(value).ravel()[0])
    return np.pad(x, widths, constant_values=fill)


# Ops exact on the grid: comparisons and data movement.
EXACT = {
    "Add": np.add, "Sub": np.subtract, "Neg": np.negative,
    "Relu": lambda x: np.maximum(x, 0.0),
    "Max": lambda *xs: np.maximum.reduce(xs),
    "Min": lambda *xs: np.minimum.reduce(xs),
    "Clip": lambda x, low=None, high=None: np.clip(x, low, high),
    "Gather": lambda x, i, axis=0: np.take(x, i.astype(np.int64), axis=axis),
    "Concat": lambda *xs, axis: np.concatenate(xs, axis=axis),
    "Reshape": _reshape,
    "Transpose": lambda x, perm=None: np.transpose(x, perm),
    "Slice": slice_tensor,
    "Pad": _pad,
    "Flatten": lambda x, axis=1: x.reshape(x.shape[0], -1),
    "Identity": lambda x: x,
    "Squeeze": lambda x, axes=None: np.squeeze(
        x, tuple(int(a) for a in axes) if axes is not None else None),
    "Unsqueeze": lambda x, axes: np.expand_dims(
        x, tuple(int(a) for a in axes)),
}


class _Evaluator:
    """Evaluates one graph on a chunk of images in one format."""

    def __init__(self, graph, run):
        self.graph = graph
        self.run = run
        bits = None if run.format is None else run.format.fractional_bits
        self.scale = None if bits is None else 2.0 ** bits
        self.constants = {name: self.grid(np.asarray(value, np.float64))
                          if np.issubdtype(value.dtype, np.floating)
                          else value
                          for name, value in _constants(graph).items()}

    def grid(self, x):
        """``x`` rounded to the grid."""
        return x if self.scale is None else np.round(x * self.scale) / self.scale

    def truncate(self, x):
        """``x`` truncated to the grid (floor)."""
        return x if self.scale is None else np.floor(x * self.scale) / self.scale

    def logits(self, pixels):
        values = dict(self.constants)
        values[self.graph.input[0].name] = self.grid(
            np.asarray(pixels, np.float64))
        for node in self.graph.node:
            if node.op_type == "Constant":
                continue
            inputs = [values[name] if name else None for name in node.input]
            value = self.node(node, inputs, node_attributes(node))
            self.run.record(node.output[0], value)
            values[node.output[0]] = value
        return values[self.graph.output[0].name]

    def product(self, node, exact):
        """Record the exact product ``exact``, then truncate it."""
        self.run.record(node.output[0], exact, product=True)
        return self.truncate(exact)

    def node(self, node, inputs, attributes):
        op = node.op_type
        if op in EXACT:
            return EXACT[op](*inputs, **attributes)
        if op == "Sigmoid":
            return self.grid(1.0 / (1.0 + np.exp(-inputs[0])))
        if op in MEAN_OPS:
            axes = attributes.get("axes", range(2, inputs[0].ndim))
            total = np.sum(inputs[0], axis=tuple(axes),
                           keepdims=bool(attributes.get("keepdims", 1)))
            self.run.record(node.output[0], total)
            count = inputs[0].size // max(1, total.size)
            return self.truncate(total / count)
        if op in PRODUCT_OPS:
            a, b = inputs
            if op == "Div":
                b = self.grid(1.0 / b)
            exact = a * b
            if any(name in self.constants and np.all(np.mod(value, 1.0) == 0)
                   for name, value in zip(node.input, (a, b))):
                return exact  # a product with integers is exact
            return self.product(node, exact)
        if op in LINEAR_OPS:
            return self.linear(node, inputs, attributes)
        raise ValueError(f"ONNX op {op} (node {node.name!r}) has no "
                         "fixed-point evaluation here")

    def linear(self, node, inputs, attributes):
        op, bias = node.op_type, None
        if op == "Conv":
            x, w, *rest = inputs
            exact = _conv(x, w, **attributes)
            bias = rest[0].reshape(1, -1, 1, 1) if rest and rest[0] is not None \
                else None
        elif op == "Gemm":
            a, b, *rest = inputs
            a = a.T if attributes.get("transA") else a
            b = b.T if attributes.get("transB") else b
            exact = attributes.get("alpha", 1.0) * (a @ b)
            bias = (attributes.get("beta", 1.0) * rest[0]
                    if rest and rest[0] is not None else None)
        else:
            exact = inputs[0] @ inputs[1]
        result = self.product(node, exact)
        return result if bias is None else result + self.grid(bias)


def fixed_point_run(model, pixels, format=None):
    """``FixedPointRun`` of ``model`` (an ONNX path or ``ModelProto``) on
    raw-pixel NHWC ``pixels`` in ``format`` (a ``FixedPointFormat``;
    ``None``: exact float64, nothing rounded)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    pixels = np.asarray(pixels)
    for chunk in (CHUNK, 1):
        run = FixedPointRun(format, None)
        evaluator = _Evaluator(model.graph, run)
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                run.logits = np.concatenate([
                    evaluator.logits(pixels[start:start + chunk])
                    for start in range(0, len(pixels), chunk)])
            return run
        except _BatchAxisDropped:  # e.g. EfficientNet's squeeze-excitation
            continue


def fixed_point_check(model, pixels, scales=CHECK_SCALES, formats=None):
    """Every format's ``FixedPointRun`` of ``model`` (an ONNX path or
    ``ModelProto``) on raw-pixel ``pixels`` times each of ``scales``:
    ``{format key: {"format", "fractional_bits", "value_bound",
    "product_bound", "margin_bits", "fits", "scales": {"x1": ..., "x2":
    ...}}}``, each scale's entry ``FixedPointRun.summary()``."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    pixels = np.asarray(pixels, np.float64)
    result = {}
    for key, fmt in (formats or FORMATS).items():
        runs = {f"x{scale:g}": fixed_point_run(model, pixels * scale, fmt)
                for scale in scales}
        result[key] = dict(
            format=fmt.name, fractional_bits=fmt.fractional_bits,
            value_bound=fmt.value_bound, product_bound=fmt.product_bound,
            margin_bits=MARGIN_BITS,
            fits=all(run.fits for run in runs.values()),
            scales={name: run.summary() for name, run in runs.items()})
    return result
