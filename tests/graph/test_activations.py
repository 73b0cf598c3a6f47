"""Functional graphs with keras.ops nodes, and activations other than ReLU
as selectable sites (replace_relus(activations=...), the generalised
ReLUSelector / PartialReLU, counting and the PI spec)."""

import keras
import numpy as np
import pytest
from keras import ops

from graph_models import random_inputs
from keras_autorep import PartialReLU, ReLUSelector
from keras_autorep.graph import count_relus, harden, replace_relus, selectors
from keras_autorep.graph.sites import OP_NODE, site_of, sites
from keras_autorep.graph.tracing import trace_model
from keras_autorep.layers import activations

pytestmark = pytest.mark.backend_agnostic


def ops_model():
    """MobileNetV3-like: keras.ops nodes on layer outputs (``x + 3``,
    ``x * c``, ``ops.relu``), a hard swish built from ReLU(6.), a fused
    silu and a sigmoid gate."""
    inputs = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv0")(inputs)
    h = ops.relu(h)
    gate = keras.layers.ReLU(6.0, name="relu6")(h + 3.0) * (1.0 / 6.0)
    h = keras.layers.Multiply(name="hswish")([h, gate])
    h = keras.layers.Conv2D(4, 1, activation="silu", name="conv1")(h)
    squeeze = keras.layers.GlobalAveragePooling2D(keepdims=True)(h)
    squeeze = keras.layers.Conv2D(4, 1, activation="sigmoid",
                                  name="gate")(squeeze)
    h = h * squeeze
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(h))


def test_activation_registry_names_and_costs():
    assert activations.canonical_name("swish") == "silu"
    assert activations.canonical_name("hard_silu") == "hard_swish"
    assert activations.pi_cost("relu6") == activations.COMPARISON
    assert activations.pi_cost("gelu") == activations.SMOOTH
    with pytest.raises(ValueError, match="activation must be one of"):
        activations.canonical_name("tanh")


def test_ops_nodes_are_sites_and_copied():
    model = ops_model()
    found = {site.layer.name: site for site in sites(model)}
    relu_node = next(s for s in found.values() if s.form == OP_NODE)
    assert (relu_node.kind, relu_node.activation) == ("ReLU", "relu")
    assert found["relu6"].activation == "relu6"
    assert found["conv1"].kind == activations.SMOOTH and found["gate"].fused
    x = random_inputs(model)
    converted = replace_relus(model)  # used to fail: 'Add' has no set_weights
    assert [s.activation for s in selectors(converted)] == ["relu"]
    np.testing.assert_allclose(converted.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-5)
    count = count_relus(converted)
    assert count.total == count_relus(model).total == 6 * 6 * 4
    assert not count.traced


@pytest.mark.parametrize("chosen", [("relu", "relu6", "silu", "sigmoid")])
def test_other_activations_become_selectors(chosen):
    model = ops_model()
    x = random_inputs(model)
    converted = replace_relus(model, activations=chosen)
    kinds = sorted(s.activation for s in selectors(converted))
    assert kinds == sorted(chosen)
    np.testing.assert_allclose(converted.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-5)
    count = count_relus(converted)
    assert count.total == 3 * 6 * 6 * 4 + 4
    assert count.kept_by_activation == {
        "relu": 144, "relu6": 144, "silu": 144, "sigmoid": 4}
    assert not count.other and not count.traced
    hardened = harden(converted, budget="10%")
    hard_count = count_relus(hardened)
    assert 0 < hard_count.kept <= 0.1 * count.total
    assert {s.layer.activation for s in sites(hardened)} == set(chosen)
    # The graph applies the smooth activations to the kept elements only.
    smooth_names = {s.layer.name for s in sites(hardened)
                    if s.pi_cost == activations.SMOOTH}
    traced_smooth = sum(op.comparisons for op in trace_model(hardened).ops
                        if op.kind == activations.SMOOTH
                        and op.layer in smooth_names)
    assert traced_smooth == sum(
        hard_count.kept_by_activation.get(name, 0)
        for name in ("silu", "sigmoid"))
    assert hard_count.graph_relus == hard_count.kept_by_activation["relu"]


def test_unselected_smooth_sites_are_listed_apart():
    count = count_relus(ops_model())
    other = {row.layer: row for row in count.other}
    assert other["conv1"].pi_cost == activations.SMOOTH and other["conv1"].total == 144
    assert other["relu6"].pi_cost == "comparison"
    assert count.smooth_elements == 144 + 4
    assert count.other_comparisons == 2 * 144


def test_a_site_that_is_not_the_registry_function_is_named():
    inputs = keras.Input((4,))
    h = keras.layers.LeakyReLU(negative_slope=0.3, name="leaky03")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    assert site_of(model.get_layer("leaky03")).form is None
    with pytest.raises(ValueError, match="'leaky03'.*leave 'leaky_relu' out"):
        replace_relus(model, activations=("relu", "leaky_relu"))
    assert not selectors(replace_relus(model))  # relu only: left alone
    with pytest.raises(ValueError, match="activations=\\(...\\), not"):
        replace_relus(model, activation="silu")
    with pytest.raises(ValueError, match="activation must be one of"):
        replace_relus(model, activations=("tanh",))


def test_gelu_op_node_approximate_is_not_converted():
    inputs = keras.Input((4,))
    h = ops.gelu(keras.layers.Dense(4)(inputs), approximate=True)
    model = keras.Model(inputs, h)
    with pytest.raises(ValueError, match="ops.gelu"):
        replace_relus(model, activations=("gelu",))


@pytest.mark.parametrize("name", ["silu", "relu6", "gelu"])
def test_selector_and_partial_relu_apply_their_activation(name, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 3, 2)).astype("float32") * 4
    expected = keras.ops.convert_to_numpy(
        activations.activation_function(name)(x))
    selector = ReLUSelector(activation=name)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(selector(x)), expected, atol=1e-6)
    assert selector.polynomial.activation == name
    partial = PartialReLU(num_kept=18, kept_indices=np.arange(18),
                          coefficients=np.zeros((3, 2)), activation=name)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(partial(x)), expected, atol=1e-6)
    model = keras.Sequential([keras.Input((3, 3, 2)), partial])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.layers[0].activation == name
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected,
                               atol=1e-6)


def test_configs_without_activation_load_as_relu():
    config = PartialReLU(num_kept=0).get_config()
    del config["activation"]
    assert PartialReLU.from_config(config).activation == "relu"
    config = ReLUSelector().get_config()
    del config["activation"]
    assert ReLUSelector.from_config(config).activation == "relu"


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="export needs the TensorFlow backend")
def test_hardened_ops_model_exports(tmp_path):
    from keras_autorep.export import export_all, read_pi_spec

    chosen = ("relu", "relu6", "silu", "sigmoid")
    hardened = harden(replace_relus(ops_model(), activations=chosen),
                      budget="20%")
    count = count_relus(hardened)
    folder = export_all(hardened, tmp_path, "ops_model")
    spec = read_pi_spec(folder)
    assert spec["totals"]["kept_by_activation"] == count.kept_by_activation
    assert {s["activation"]: s["pi_cost"] for s in spec["sites"]} == {
        "relu": "comparison", "relu6": "comparison", "silu": "smooth",
        "sigmoid": "smooth"}


def test_budget_training_refits_each_activation():
    """A training step on a model with relu6/silu/sigmoid selectors: the
    DaPa refit (Gauss-Hermite for these) runs inside the compiled step and
    moves each polynomial to its activation's fit of the batch statistics."""
    from keras_autorep import BudgetTrainer
    from keras_autorep.dapa import dapa_coefficients

    keras.utils.set_random_seed(0)
    teacher = ops_model()
    student = replace_relus(teacher, activations=("relu", "relu6", "silu",
                                                  "sigmoid"))
    trainer = BudgetTrainer(student, budget="10%", teacher=teacher)
    # learning rate 0: the coefficients are the refit's, untouched by SGD
    trainer.compile(optimizer=keras.optimizers.SGD(0.0),
                    loss=keras.losses.SparseCategoricalCrossentropy(
                        from_logits=True))
    x = np.random.default_rng(1).normal(size=(8, 6, 6, 3)).astype("float32")
    history = trainer.fit(x, np.zeros(8, "int32"), batch_size=8, epochs=1,
                          verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for selector in selectors(student):
        polynomial = selector.polynomial
        function = (None if selector.activation == "relu"  # closed form
                    else activations.activation_function(selector.activation))
        fitted = dapa_coefficients(
            polynomial.moving_mean, polynomial.moving_std, polynomial.degree,
            function)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(polynomial.coefficients),
            keras.ops.convert_to_numpy(fitted), atol=1e-5)
