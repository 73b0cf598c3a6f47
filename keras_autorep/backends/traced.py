"""The comparison-based ops of a traced graph, as every backend's walk
reports them (``keras_autorep.graph.tracing`` attributes them to layers).

Kinds, in ReLU-equivalent comparisons per example:

* ``RELU``: ``max(x, 0)``: one per element;
* ``MAX``: a max over windows or axes (max-pooling, ``reduce_max``,
  argmax, the max inside softmax): ``window - 1`` per output element;
* ``COMPARISON``: every other comparison (relu6 counts two: ``max`` and
  ``min``; leaky ReLU, ELU, clip, abs, ``x > y``, ...);
* ``SMOOTH``: a smooth non-linearity a PI protocol approximates piecewise
  (the core of sigmoid, silu, gelu): one per element, not a comparison.
"""

import dataclasses
import math

RELU = "relu"
MAX = "max"
COMPARISON = "comparison"
SMOOTH = "smooth"


@dataclasses.dataclass(frozen=True)
class TracedOp:
    """One comparison-based op of a traced graph (per example).

    Attributes:
        layer: name of the innermost layer computing it, or ``None`` (the
            walks leave it ``None``; tracing a model fills it in).
        node: the op's name in the traced graph, its name scopes first.
        kind: ``RELU``, ``MAX``, ``COMPARISON`` or ``SMOOTH``.
        comparisons: ReLU-equivalent comparisons per example.
        shape: shape (without batch) of the op's input.
    """

    layer: object
    node: str
    kind: str
    comparisons: int
    shape: tuple


def size(shape):
    """Elements of a fully known shape."""
    return int(math.prod(int(d) for d in shape))


def per_example(shape, node):
    """Elements of one example of a ``(batch, ...)`` shape."""
    dims = list(shape)[1:]
    if any(d is None for d in dims):
        raise ValueError(
            f"{node}: the per-example size of its input is unknown "
            f"(shape {tuple(shape)}); trace on a fixed input size"
        )
    return size(dims)
