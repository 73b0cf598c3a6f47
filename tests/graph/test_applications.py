"""Regressions on keras.applications models (weights=None, 32x32, 10
classes): convert with the right ``activations=``, same function with all
masks on, harden at 10 %, export, and the traced graph computes what the
count reports. MobileNetV3Small (keras.ops nodes, relu/relu6/hard swish)
is converted and hardened by default; the larger models, and the export of
every model (minutes each on 2 cores), run with ``--slow``."""

import math

import keras
import numpy as np
import pytest

from keras_autorep.export import export_all, read_pi_spec
from keras_autorep.graph import count_relus, harden, replace_relus, selectors
from keras_autorep.graph.sites import sites
from keras_autorep.graph.tracing import COMPARISON, RELU, SMOOTH, trace_model
from keras_autorep.layers import activations

APPLICATIONS = {
    # name: (constructor, activations, ReLU-equivalent comparisons per kept
    # element of each comparison activation in the TF graph)
    "ResNet50": ("ResNet50", ("relu",)),
    "MobileNetV2": ("MobileNetV2", ("relu6",)),
    "MobileNetV3Small": ("MobileNetV3Small", ("relu", "relu6", "hard_swish")),
    "EfficientNetB0": ("EfficientNetB0", ("silu",)),
}
SLOW = {"ResNet50", "MobileNetV2", "EfficientNetB0"}
# Comparisons per element of the TF op behind each kept activation
# (relu6 and hard swish: one Relu6 op, a max and a min).
COMPARISONS_PER_ELEMENT = {"relu6": 2, "hard_swish": 2}


def build(name):
    constructor, _ = APPLICATIONS[name]
    return getattr(keras.applications, constructor)(
        weights=None, input_shape=(32, 32, 3), classes=10,
        classifier_activation=None)


def traced_by_kind(model):
    """Elements of the hardened sites' own ops in the traced graph, by
    activation."""
    layer_activation = {site.layer.name: site.activation
                        for site in sites(model) if site.is_relu}
    found = {}
    for op in trace_model(model).ops:
        name = layer_activation.get(op.layer)
        if name is None:
            continue
        if op.kind in (RELU, SMOOTH):
            found[name] = found.get(name, 0) + op.comparisons
        elif op.kind == COMPARISON:
            found[name] = found.get(name, 0) + (
                op.comparisons // COMPARISONS_PER_ELEMENT[name])
    return found


def converted_and_hardened(name):
    """Convert, check the function and the counts, harden at 10 %."""
    model = build(name)
    chosen = APPLICATIONS[name][1]
    before = count_relus(model)
    selectable = sum(row.total for row in before.other
                     if row.activation in chosen)
    converted = replace_relus(model, activations=chosen)
    count = count_relus(converted)
    assert count.total == before.total + selectable > 0
    assert set(count.kept_by_activation) == set(chosen)
    assert not count.traced
    assert not any(row.activation in chosen for row in count.other)
    assert {s.activation for s in selectors(converted)} == set(chosen)

    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3))
    x = x.astype("float32")
    diff = np.max(np.abs(keras.ops.convert_to_numpy(
        converted(x, training=False) - model(x, training=False))))
    assert diff < 1e-5

    hardened = harden(converted, budget="10%")
    hard = count_relus(hardened)
    assert 0 < hard.kept <= math.floor(0.1 * count.total)
    assert hard.total == count.total
    assert traced_by_kind(hardened) == {
        key: value for key, value in hard.kept_by_activation.items() if value}
    assert hard.graph_relus == hard.kept_by_activation.get("relu", 0)
    return hardened, hard


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
    for name in APPLICATIONS
])
def test_application_converts_and_hardens(name):
    converted_and_hardened(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(APPLICATIONS))
def test_application_exports(name, tmp_path):
    hardened, hard = converted_and_hardened(name)
    chosen = APPLICATIONS[name][1]
    # export_all checks that the SavedModel and ONNX graphs compute the
    # counted ReLUs (graph_relus) before it publishes.
    folder = export_all(hardened, tmp_path, name.lower())
    spec = read_pi_spec(folder)
    assert spec["totals"]["relu_kept"] == hard.kept
    assert {site["activation"] for site in spec["sites"]} == set(chosen)
    assert {site["pi_cost"] for site in spec["sites"]} == {
        activations.pi_cost(a) for a in chosen}


def test_application_inside_a_preprocessing_model():
    """``keras.Model(inputs, base(preprocess(inputs)))``, as Keras's
    transfer-learning guide builds it: counted, converted and hardened like
    the application itself."""
    base = build("MobileNetV3Small")
    chosen = APPLICATIONS["MobileNetV3Small"][1]
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, base(keras.layers.Rescaling(2.0, -1.0)(
        inputs)))
    assert count_relus(model).total == count_relus(base).total
    converted = replace_relus(model, activations=chosen)
    count = count_relus(converted)
    alone = count_relus(replace_relus(base, activations=chosen))
    assert (count.total, len(count.rows)) == (alone.total, len(alone.rows))
    assert count.kept_by_activation == alone.kept_by_activation
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3))
    x = x.astype("float32")
    assert np.max(np.abs(keras.ops.convert_to_numpy(
        converted(x) - model(x)))) < 1e-5
    hard = count_relus(harden(converted, budget="10%"))
    assert 0 < hard.kept <= math.floor(0.1 * count.total)
