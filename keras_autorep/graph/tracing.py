"""What a model really computes: comparison-based ops on its traced graph.

``trace_comparisons(model)`` traces one inference call on a batch of one
(``keras_autorep.backends``: on TensorFlow the concrete function's ops, on
JAX the jaxpr, nested jaxprs included) and returns a ``TracedOp`` for every
comparison-based op whose input depends on the model input (comparisons
of constants, such as the ``maximum(sqrt(variance), eps)`` of a
``Normalization`` layer, cost nothing in private inference). Each op is
attributed to the innermost layer whose name scope holds it, or to no
layer (``layer=None``: e.g. a ``keras.ops`` call on a layer output in a
functional model): while tracing, every layer's call runs inside a marker
name scope.

Kinds (``keras_autorep.backends.traced``), in ReLU-equivalent comparisons
per example: ``RELU`` (``max(x, 0)``), ``MAX`` (max-pooling, ``reduce_max``,
argmax, softmax's max), ``COMPARISON`` (relu6, leaky ReLU, clip, ...) and
``SMOOTH`` (sigmoid, tanh, erf: the core of silu, gelu).
"""

import collections
import contextlib
import dataclasses
import functools
import re
import weakref

import keras
import numpy as np

from keras_autorep.backends import (
    COMPARISON,
    MAX,
    RELU,
    SMOOTH,
    TracedOp,
    current,
)
from keras_autorep.graph.sites import iter_layers

_MARKER = re.compile(r"^keras_autorep_layer(\d+)(?:_\d+)?$")
_CACHE = weakref.WeakKeyDictionary()


def _layer_of(node, layer_names):
    """The layer named by the innermost marker scope of a node's name (TF
    appends ``_<n>`` to a scope entered more than once)."""
    for scope in reversed(node.split("/")[:-1]):
        match = _MARKER.match(scope)
        if match:
            return layer_names[int(match.group(1))]
    return None


@contextlib.contextmanager
def _marked_calls(layers, calls):
    """Run every layer's ``call`` inside the name scope
    ``keras_autorep_layer<index>`` while the block runs, and append the
    output shape (without batch) of each call to ``calls[name]``."""
    own = {id(layer): layer.__dict__.get("call") for layer in layers}
    for index, layer in enumerate(layers):
        original = layer.call

        @functools.wraps(original)
        def marked(*args, _original=original, _index=index, **kwargs):
            with keras.name_scope(f"keras_autorep_layer{_index}"):
                outputs = _original(*args, **kwargs)
            first = keras.tree.flatten(outputs)[0]
            calls[layers[_index].name].append(tuple(first.shape[1:]))
            return outputs

        layer.call = marked
    try:
        yield
    finally:
        for layer in layers:
            del layer.call
            if own[id(layer)] is not None:
                layer.call = own[id(layer)]


@dataclasses.dataclass(frozen=True)
class Trace:
    """One traced inference call of a model.

    Attributes:
        ops: a ``TracedOp`` per comparison-based op.
        calls: ``{layer name: (output shape per call, ...)}`` for every
            layer the call ran (shapes without batch).
    """

    ops: tuple
    calls: dict


def trace_model(model):
    """Trace one inference call of ``model`` on the current backend.

    Traced once per model object (the result depends on the layer
    structure only).

    Returns:
        A ``Trace``.

    Raises:
        NotImplementedError: on a backend other than TensorFlow or JAX.
    """
    if model in _CACHE:
        return _CACHE[model]
    examples = [
        np.zeros((1, *tensor.shape[1:]), dtype=tensor.dtype)
        for tensor in model.inputs
    ]
    layers = list(iter_layers(model))
    names = [layer.name for layer in layers]
    calls = collections.defaultdict(list)
    with _marked_calls(layers, calls):
        ops = current().trace(model, examples)
    ops = tuple(dataclasses.replace(op, layer=_layer_of(op.node, names))
                for op in ops)
    trace = Trace(ops, {name: tuple(shapes) for name, shapes in calls.items()})
    _CACHE[model] = trace
    return trace


def trace_comparisons(model):
    """The comparison-based ops one inference call of ``model`` computes
    (``trace_model(model).ops``)."""
    return trace_model(model).ops


__all__ = [
    "COMPARISON",
    "MAX",
    "RELU",
    "SMOOTH",
    "Trace",
    "TracedOp",
    "trace_comparisons",
    "trace_model",
]
