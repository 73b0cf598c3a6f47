"""Property: ``harden(model, budget)`` never keeps more than the budget, on
random Sequential and functional models (residual adds, fused and
standalone ReLUs, shared ReLU layers, polynomial layers), converted or not;
it either fits the budget or raises ``ValueError`` saying why. The count
always equals what the traced graph computes."""

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_autorep import (
    PolynomialActivation,
    count_relus,
    harden,
    replace_relus,
    selectors,
)
from keras_autorep.graph.tracing import RELU, trace_comparisons

pytestmark = pytest.mark.backend_agnostic

ACTIVATIONS = ("fused", "relu_layer", "activation", "polynomial", "none")


def build(spec):
    """A small CNN from a drawn spec: ``(functional, blocks, shared)``."""
    functional, blocks, shared = spec
    inputs = keras.Input((6, 6, 3))
    shared_relu = keras.layers.ReLU(name="shared_relu")
    x = inputs
    layers = []
    for index, (activation, residual) in enumerate(blocks):
        conv = keras.layers.Conv2D(
            4, 3, padding="same",
            activation="relu" if activation == "fused" else None,
            name=f"conv{index}")
        block = [conv]
        if activation == "relu_layer":
            block.append(keras.layers.ReLU(name=f"relu{index}"))
        elif activation == "activation":
            block.append(keras.layers.Activation("relu", name=f"act{index}"))
        elif activation == "polynomial":
            block.append(PolynomialActivation(name=f"poly{index}"))
        layers += block
        y = x
        for layer in block:
            y = layer(y)
        if functional and residual and x.shape[-1] == y.shape[-1]:
            y = keras.layers.Add(name=f"add{index}")([x, y])
        if functional and shared and index < 2:
            y = shared_relu(y)  # one ReLU layer object, called twice
        x = y
    head = [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)]
    if functional:
        for layer in head:
            x = layer(x)
        return keras.Model(inputs, x)
    return keras.Sequential([keras.Input((6, 6, 3)), *layers, *head])


model_specs = st.tuples(
    st.booleans(),
    st.lists(st.tuples(st.sampled_from(ACTIVATIONS), st.booleans()),
             min_size=1, max_size=4),
    st.booleans(),
)


def traced_relus(model):
    return sum(op.comparisons for op in trace_comparisons(model)
               if op.kind == RELU)


def scramble(student, rng):
    """Random trained state: masks and indicators."""
    for site in selectors(student):
        shape = tuple(site.mask.shape)
        site.mask.assign((rng.random(shape) < 0.5).astype("float32"))
        site.alpha.assign(rng.normal(size=shape).astype("float32"))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(spec=model_specs, convert=st.booleans(),
       fraction=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_harden_never_exceeds_the_budget(spec, convert, fraction, seed):
    model = build(spec)
    rng = np.random.default_rng(seed)
    if convert:
        model = replace_relus(model)
        scramble(model, rng)
    total = count_relus(model).total
    budget = int(fraction * total)
    fixed = 0 if convert else count_relus(model).kept
    if fixed > budget:
        with pytest.raises(ValueError, match="more than the budget"):
            harden(model, budget)
        return
    hardened = harden(model, budget)
    count = count_relus(hardened)
    assert count.kept <= budget
    assert count.total == total
    assert traced_relus(hardened) == count.graph_relus == count.kept


def test_a_shared_selector_is_budgeted_per_call():
    model = build((True, [("fused", False), ("none", False)], True))
    student = replace_relus(model)
    shared = student.get_layer("shared_relu")
    assert [row.calls for row in count_relus(student).rows
            if row.layer == "shared_relu"] == [2]
    rng = np.random.default_rng(0)
    scramble(student, rng)
    hardened = harden(student, budget=48)
    assert count_relus(hardened).kept <= 48
    assert traced_relus(hardened) == count_relus(hardened).kept
    assert shared.total_relus == 144


def test_harden_refuses_a_plain_model_over_the_budget():
    model = build((False, [("relu_layer", False)], False))
    with pytest.raises(ValueError, match="relu0"):
        harden(model, budget=100)
    assert count_relus(harden(model, budget=144)).kept == 144
