"""What a model really computes: comparison-based ops on its traced graph.

``trace_comparisons(model)`` traces one inference call on a batch of one
(TensorFlow backend: the concrete function's ops; JAX backend: the
jaxpr, nested jaxprs included) and returns a ``TracedOp`` for every
comparison-based op whose input depends on the model input (comparisons
of constants, such as the ``maximum(sqrt(variance), eps)`` of a
``Normalization`` layer, cost nothing in private inference). Each op is
attributed to the innermost layer whose name scope holds it, or to no
layer (``layer=None``: e.g. a ``keras.ops`` call on a layer output in a
functional model).

Kinds, in ReLU-equivalent comparisons per example:

* ``RELU``: ``max(x, 0)`` (TF ``Relu`` or ``Maximum`` with a zero constant,
  JAX ``max`` with a literal 0): one per element;
* ``MAX``: a max over windows or axes (max-pooling, ``reduce_max``,
  argmax, the max inside softmax): ``window - 1`` per output element;
* ``COMPARISON``: every other comparison (relu6 counts two: ``max`` and
  ``min``; leaky ReLU, ELU, clip, abs, ``x > y``, ...);
* ``SMOOTH``: a smooth non-linearity a PI protocol approximates piecewise
  (TF ``Sigmoid``/``Tanh``/``Erf``, JAX ``logistic``/``tanh``/``erf``: the
  core of sigmoid, silu, gelu): one per element, not a comparison.

``tf_graph_comparisons(graph, inputs)`` does the same on any TensorFlow
graph whose first axis is the batch (e.g. an exported serving signature).
"""

import collections
import contextlib
import dataclasses
import functools
import math
import re
import weakref

import keras
import numpy as np

from keras_autorep.graph.sites import iter_layers

RELU = "relu"
MAX = "max"
COMPARISON = "comparison"
SMOOTH = "smooth"

# TensorFlow op type -> (kind, comparisons per element of the first input).
_TF_ELEMENTWISE = {
    "Relu": (RELU, 1),
    "Relu6": (COMPARISON, 2),
    "LeakyRelu": (COMPARISON, 1),
    "Elu": (COMPARISON, 1),
    "Selu": (COMPARISON, 1),
    "ClipByValue": (COMPARISON, 2),
    "Abs": (COMPARISON, 1),
    "Sign": (COMPARISON, 1),
    "Greater": (COMPARISON, 1),
    "GreaterEqual": (COMPARISON, 1),
    "Less": (COMPARISON, 1),
    "LessEqual": (COMPARISON, 1),
    "Maximum": (COMPARISON, 1),
    "Minimum": (COMPARISON, 1),
    "Sigmoid": (SMOOTH, 1),
    "Tanh": (SMOOTH, 1),
    "Erf": (SMOOTH, 1),
}
_TF_REDUCTIONS = ("Max", "ArgMax", "ArgMin", "Min", "Softmax", "LogSoftmax")
_TF_POOLS = ("MaxPool", "MaxPoolV2", "MaxPool3D")
# JAX primitive -> (kind, comparisons per element of the first input).
_JAX_ELEMENTWISE = {
    "max": (COMPARISON, 1),
    "min": (COMPARISON, 1),
    "gt": (COMPARISON, 1),
    "ge": (COMPARISON, 1),
    "lt": (COMPARISON, 1),
    "le": (COMPARISON, 1),
    "clamp": (COMPARISON, 2),
    "abs": (COMPARISON, 1),
    "sign": (COMPARISON, 1),
    "logistic": (SMOOTH, 1),
    "tanh": (SMOOTH, 1),
    "erf": (SMOOTH, 1),
}
_JAX_REDUCTIONS = ("reduce_max", "reduce_min", "argmax", "argmin")
_JAX_POOLS = ("reduce_window_max", "reduce_window_min")


@dataclasses.dataclass(frozen=True)
class TracedOp:
    """One comparison-based op of a traced graph (per example).

    Attributes:
        layer: name of the innermost layer computing it, or ``None``.
        node: the op's name in the traced graph (for messages).
        kind: ``RELU``, ``MAX`` or ``COMPARISON``.
        comparisons: ReLU-equivalent comparisons per example.
        shape: shape (without batch) of the op's input.
    """

    layer: object
    node: str
    kind: str
    comparisons: int
    shape: tuple


def _size(shape):
    return int(math.prod(int(d) for d in shape))


def _per_example(shape, node):
    """Elements of one example of a ``(batch, ...)`` shape."""
    dims = list(shape)[1:]
    if any(d is None for d in dims):
        raise ValueError(
            f"{node}: the per-example size of its input is unknown "
            f"(shape {tuple(shape)}); trace on a fixed input size"
        )
    return _size(dims)


_MARKER = re.compile(r"^keras_autorep_layer(\d+)(?:_\d+)?$")


def _layer_of(scopes, layer_names):
    """The layer named by the innermost marker scope in a scope path (TF
    appends ``_<n>`` to a scope entered more than once)."""
    for scope in reversed(scopes):
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


# ---------------------------------------------------------------- TensorFlow


def _tf_static_zero(tensor):
    import tensorflow as tf

    value = tf.get_static_value(tensor)
    return value is not None and not np.any(value)


def _tf_classify(op, dependent):
    """``(kind, comparisons per example)`` of a TensorFlow op, or
    ``None``."""
    inputs = [t for t in op.inputs if t.dtype.is_floating]
    if op.type in _TF_ELEMENTWISE:
        kind, per_element = _TF_ELEMENTWISE[op.type]
        live = [t for t in inputs if t.ref() in dependent]
        if not live:
            return None
        if op.type == "Maximum" and any(
            _tf_static_zero(t) for t in inputs if t.ref() not in dependent
        ):
            kind = RELU
        return kind, per_element * _per_example(op.outputs[0].shape, op.name)
    if op.type in _TF_REDUCTIONS + _TF_POOLS:
        if not inputs or inputs[0].ref() not in dependent:
            return None
        size_in = _per_example(inputs[0].shape, op.name)
        size_out = _per_example(op.outputs[0].shape, op.name)
        if op.type in _TF_POOLS:
            window = _size(op.get_attr("ksize"))
            return MAX, size_out * (window - 1)
        if op.type in ("Softmax", "LogSoftmax"):
            rows = size_in // max(1, int(inputs[0].shape[-1]))
            return MAX, size_in - rows
        return MAX, size_in - size_out
    return None


def tf_graph_comparisons(graph, inputs, layer_names=()):
    """The ``TracedOp`` list of a TensorFlow graph.

    Args:
        graph: a ``tf.Graph`` (shapes static, batch of one).
        inputs: the graph's input tensors (the model input).
        layer_names: names of the layers whose calls ran in marker scopes,
            by index (``()``: attribute nothing).
    """
    dependent = {t.ref() for t in inputs}
    traced = []
    for op in graph.get_operations():  # topological order
        if any(t.ref() in dependent for t in op.inputs):
            dependent.update(t.ref() for t in op.outputs)
        else:
            continue
        classified = _tf_classify(op, dependent)
        if classified is None:
            continue
        kind, comparisons = classified
        shape = tuple(op.inputs[0].shape[1:])
        scopes = op.name.split("/")[:-1]
        traced.append(TracedOp(_layer_of(scopes, layer_names), op.name,
                               kind, comparisons, shape))
    return traced


def _trace_tensorflow(model, examples, layer_names):
    import tensorflow as tf

    specs = [tf.TensorSpec(x.shape, x.dtype) for x in examples]
    function = tf.function(
        lambda *xs: model(xs[0] if len(xs) == 1 else list(xs),
                          training=False)
    ).get_concrete_function(*specs)
    inputs = function.inputs[: len(specs)]
    return tf_graph_comparisons(function.graph, inputs, layer_names)


# ---------------------------------------------------------------- JAX


def _jax_is_zero_literal(var):
    value = getattr(var, "val", None)
    return value is not None and not np.any(np.asarray(value))


def _jax_classify(eqn, dependent):
    name = eqn.primitive.name
    live = [v for v in eqn.invars if id(v) in dependent]
    if not live:
        return None
    if name in _JAX_ELEMENTWISE:
        kind, per_element = _JAX_ELEMENTWISE[name]
        if name == "max" and any(
            _jax_is_zero_literal(v) for v in eqn.invars if v not in live
        ):
            kind = RELU
        return kind, per_element * _size(eqn.outvars[0].aval.shape[1:])
    if name in _JAX_POOLS:
        window = _size(eqn.params["window_dimensions"])
        return MAX, _size(eqn.outvars[0].aval.shape[1:]) * (window - 1)
    if name in _JAX_REDUCTIONS:
        size_in = _size(eqn.invars[0].aval.shape[1:])
        return MAX, size_in - _size(eqn.outvars[0].aval.shape[1:])
    return None


def _sub_jaxprs(eqn):
    for param in eqn.params.values():
        for candidate in param if isinstance(param, (tuple, list)) else (
                param,):
            sub = getattr(candidate, "jaxpr", candidate)
            if hasattr(sub, "eqns") and hasattr(sub, "invars"):
                yield sub


def _walk_jaxpr(jaxpr, dependent, scope, layer_names, traced):
    for eqn in jaxpr.eqns:
        if not any(id(v) in dependent for v in eqn.invars):
            continue
        dependent.update(id(v) for v in eqn.outvars)
        stack = str(eqn.source_info.name_stack) or scope
        subs = list(_sub_jaxprs(eqn))
        if subs:
            for sub in subs:
                # Map the call's operands onto the sub-jaxpr's inputs.
                offset = len(eqn.invars) - len(sub.invars)
                inner = {
                    id(v) for v, outer in zip(sub.invars,
                                              eqn.invars[max(0, offset):])
                    if id(outer) in dependent
                }
                _walk_jaxpr(sub, inner, stack, layer_names, traced)
            continue
        classified = _jax_classify(eqn, dependent)
        if classified is None:
            continue
        kind, comparisons = classified
        shape = tuple(eqn.invars[0].aval.shape[1:])
        traced.append(TracedOp(
            _layer_of(stack.split("/"), layer_names),
            f"{stack}/{eqn.primitive.name}", kind, comparisons, shape))


def _trace_jax(model, examples, layer_names):
    import jax

    closed = jax.make_jaxpr(
        lambda *xs: model(xs[0] if len(xs) == 1 else list(xs),
                          training=False)
    )(*examples)
    traced = []
    jaxpr = closed.jaxpr
    _walk_jaxpr(jaxpr, {id(v) for v in jaxpr.invars}, "", layer_names,
                traced)
    return traced


# ---------------------------------------------------------------- entry

_TRACERS = {"tensorflow": _trace_tensorflow, "jax": _trace_jax}
_CACHE = weakref.WeakKeyDictionary()


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
    backend = keras.backend.backend()
    if backend not in _TRACERS:
        raise NotImplementedError(
            f"tracing a model needs the TensorFlow or JAX backend, not "
            f"{backend!r}"
        )
    examples = [
        np.zeros((1, *tensor.shape[1:]), dtype=tensor.dtype)
        for tensor in model.inputs
    ]
    layers = list(iter_layers(model))
    calls = collections.defaultdict(list)
    with _marked_calls(layers, calls):
        ops = tuple(_TRACERS[backend](
            model, examples, [layer.name for layer in layers]))
    trace = Trace(ops, {name: tuple(shapes) for name, shapes in calls.items()})
    _CACHE[model] = trace
    return trace


def trace_comparisons(model):
    """The comparison-based ops one inference call of ``model`` computes
    (``trace_model(model).ops``)."""
    return trace_model(model).ops
