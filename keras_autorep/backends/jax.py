"""The JAX backend: the walk over a jaxpr (nested jaxprs included) and
``keras.distribution.DataParallel``. JAX is imported on first use."""

import keras
import numpy as np

from keras_autorep.backends.base import Backend
from keras_autorep.backends.traced import (
    COMPARISON,
    MAX,
    RELU,
    SMOOTH,
    TracedOp,
    size,
)

# JAX primitive -> (kind, comparisons per element of the first input).
_ELEMENTWISE = {
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
_REDUCTIONS = ("reduce_max", "reduce_min", "argmax", "argmin")
_POOLS = ("reduce_window_max", "reduce_window_min")


def _is_zero_literal(var):
    value = getattr(var, "val", None)
    return value is not None and not np.any(np.asarray(value))


def _classify(eqn, dependent):
    name = eqn.primitive.name
    live = [v for v in eqn.invars if id(v) in dependent]
    if not live:
        return None
    if name in _ELEMENTWISE:
        kind, per_element = _ELEMENTWISE[name]
        if name == "max" and any(
            _is_zero_literal(v) for v in eqn.invars if v not in live
        ):
            kind = RELU
        return kind, per_element * size(eqn.outvars[0].aval.shape[1:])
    if name in _POOLS:
        window = size(eqn.params["window_dimensions"])
        return MAX, size(eqn.outvars[0].aval.shape[1:]) * (window - 1)
    if name in _REDUCTIONS:
        size_in = size(eqn.invars[0].aval.shape[1:])
        return MAX, size_in - size(eqn.outvars[0].aval.shape[1:])
    return None


def _sub_jaxprs(eqn):
    for param in eqn.params.values():
        for candidate in param if isinstance(param, (tuple, list)) else (
                param,):
            sub = getattr(candidate, "jaxpr", candidate)
            if hasattr(sub, "eqns") and hasattr(sub, "invars"):
                yield sub


def _walk(jaxpr, dependent, scope, traced):
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
                _walk(sub, inner, stack, traced)
            continue
        classified = _classify(eqn, dependent)
        if classified is None:
            continue
        kind, comparisons = classified
        traced.append(TracedOp(None, f"{stack}/{eqn.primitive.name}", kind,
                               comparisons,
                               tuple(eqn.invars[0].aval.shape[1:])))


class Jax(Backend):
    """JAX: traces the jaxpr of an inference call; one global program
    over all devices and hosts."""

    multi_host = True

    def trace(self, model, examples):
        import jax

        closed = jax.make_jaxpr(
            lambda *xs: model(xs[0] if len(xs) == 1 else list(xs),
                              training=False)
        )(*examples)
        traced = []
        jaxpr = closed.jaxpr
        _walk(jaxpr, {id(v) for v in jaxpr.invars}, "", traced)
        return traced

    def data_parallel(self, devices):
        """``keras.distribution.DataParallel``: the batch sharded across
        devices, every variable replicated."""
        return keras.distribution.DataParallel(devices=devices)
