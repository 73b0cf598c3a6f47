"""ReLUSelector: build, call, gradients, hysteresis, its polynomial branch,
serialisation."""

import keras
import numpy as np
import pytest

from backend_utils import gradient_wrt, gradients
from keras_autorep import PolynomialActivation, ReLUSelector
from keras_autorep.layers.activations import ACTIVATIONS, activation_function
from keras_autorep.layers.selection import select, selection
from keras_autorep.dapa import dapa_coefficients, evaluate_polynomial
from layer_contract import check_layer_contract

pytestmark = pytest.mark.backend_agnostic

RNG = np.random.default_rng(0)


def np_softplus(x):
    return np.log1p(np.exp(x))


@pytest.mark.parametrize(
    "layer_fn",
    [
        lambda: ReLUSelector(),
        lambda: ReLUSelector(granularity="channel", threshold=0.01, degree=1),
        lambda: ReLUSelector(fit="identity", degree=1),
    ],
    ids=["default", "channel_degree1", "identity"],
)
def test_selector_keeps_the_layer_contract(layer_fn, tmp_path):
    model, reloaded, _ = check_layer_contract(layer_fn, (4, 4, 3), tmp_path)
    layer, again = model.layers[-1], reloaded.layers[-1]
    # The state of the training step (masks, statistics) is what reloads.
    for name in ("alpha", "mask"):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(getattr(again, name)),
            keras.ops.convert_to_numpy(getattr(layer, name)),
        )
    for name in ("coefficients", "learned", "fitted", "moving_mean",
                 "moving_std", "steps"):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(getattr(again.polynomial, name)),
            keras.ops.convert_to_numpy(getattr(layer.polynomial, name)),
        )


def test_selector_holds_a_polynomial_and_keeps_its_config():
    layer = ReLUSelector(granularity="channel", threshold=0.01, degree=1,
                         fit="dapa", refit_every=5, refit_steps=50,
                         momentum=0.8, epsilon=1e-4, name="site")
    assert not isinstance(layer, PolynomialActivation)
    assert isinstance(layer.polynomial, PolynomialActivation)
    assert (layer.degree, layer.fit) == (1, "dapa")
    config = layer.get_config()
    assert {key: config[key] for key in (
        "granularity", "threshold", "degree", "fit", "refit_every",
        "refit_steps", "momentum", "epsilon", "name")} == dict(
        granularity="channel", threshold=0.01, degree=1, fit="dapa",
        refit_every=5, refit_steps=50, momentum=0.8, epsilon=1e-4,
        name="site")
    assert ReLUSelector.from_config(config).get_config() == config
    layer.build((None, 3, 3, 2))
    layer.polynomial.assign_coefficients(np.ones((2, 2), "float32"))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(layer.coefficients), np.ones((2, 2)))


def test_selector_works_after_dense():
    layer = ReLUSelector()
    y = layer(RNG.normal(size=(8, 6)).astype("float32"))
    assert y.shape == (8, 6)
    assert layer.alpha.shape == (6,)
    assert layer.coefficients.shape == (3, 6)


def test_selector_shapes_and_initial_state():
    layer = ReLUSelector()
    layer.build((None, 5, 5, 4))
    alpha = keras.ops.convert_to_numpy(layer.alpha)
    assert alpha.shape == (5, 5, 4)
    assert 0.0 <= alpha.min() and alpha.max() <= 1.0
    assert np.all(keras.ops.convert_to_numpy(layer.mask) == 1)
    assert layer.total_relus == 100 and layer.relus_per_indicator == 1
    channel = ReLUSelector(granularity="channel")
    channel.build((None, 5, 5, 4))
    assert channel.alpha.shape == (4,) and channel.relus_per_indicator == 25


def test_all_ones_mask_is_relu_and_all_zeros_is_polynomial():
    layer = ReLUSelector()
    x = RNG.normal(size=(3, 4, 4, 2)).astype("float32")
    np.testing.assert_allclose(layer(x), np.maximum(x, 0), atol=1e-6)
    layer.mask.assign(np.zeros(layer.mask.shape, "float32"))
    expected = evaluate_polynomial(x, keras.ops.convert_to_numpy(layer.coefficients))
    np.testing.assert_allclose(layer(x), expected, atol=1e-6)


@pytest.mark.parametrize("granularity", ["pixel", "channel"])
def test_straight_through_gradient_is_softplus_times_mask_gradient(granularity):
    layer = ReLUSelector(granularity=granularity, refit_steps=0)
    x = RNG.normal(size=(4, 3, 3, 2)).astype("float32")
    layer.build(x.shape)
    layer.alpha.assign(RNG.uniform(0.1, 1.0, size=layer.alpha.shape))
    weights = RNG.normal(size=x.shape).astype("float32")

    def loss():
        return keras.ops.sum(layer(x, training=True) * weights)

    grad_alpha = gradient_wrt(layer.alpha, loss)

    # dL/dm numerically: central differences on each mask entry (inference
    # mode uses the stored mask, so L is a function of m alone).
    mask = keras.ops.convert_to_numpy(layer.mask)
    mask_grad = np.zeros_like(mask)
    eps = 1e-2
    for index in np.ndindex(mask.shape):
        values = []
        for sign in (1, -1):
            shifted = mask.copy()
            shifted[index] += sign * eps
            layer.mask.assign(shifted)
            values.append(float(np.sum(keras.ops.convert_to_numpy(layer(x)) * weights)))
        mask_grad[index] = (values[0] - values[1]) / (2 * eps)
    layer.mask.assign(mask)
    alpha = keras.ops.convert_to_numpy(layer.alpha)
    np.testing.assert_allclose(grad_alpha, np_softplus(alpha) * mask_grad, rtol=1e-3, atol=1e-3)
    assert np.abs(mask_grad).max() > 0.1  # the check is not vacuous


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("degree", [1, 2])
@pytest.mark.parametrize("mask_shape", [(3, 3, 2), (2,)], ids=["pixel",
                                                               "channel"])
def test_hand_written_gradient_matches_automatic_differentiation(
        degree, mask_shape, activation):
    """``selection(f)``'s gradients (inputs, mask, coefficients) are those
    of ``p + m * (f(x) - p)`` differentiated by the backend, for binary and
    fractional masks and every selectable activation ``f``."""
    assert select is selection("relu")
    select_f, f = selection(activation), activation_function(activation)
    x = 4 * RNG.normal(size=(4, 3, 3, 2)).astype("float32")
    mask = RNG.uniform(size=mask_shape).astype("float32")
    mask[..., 0] = RNG.integers(0, 2, size=mask[..., 0].shape)
    coefficients = RNG.normal(size=(degree + 1, 2)).astype("float32")
    weights = RNG.normal(size=x.shape).astype("float32")
    ops = keras.ops

    def formula(x, mask, coefficients):
        polynomial = evaluate_polynomial(x, coefficients)
        return polynomial + mask * (f(x) - polynomial)

    expected = gradients(lambda *a: ops.sum(formula(*a) * weights),
                         x, mask, coefficients)
    actual = gradients(lambda *a: ops.sum(select_f(*a) * weights),
                       x, mask, coefficients)
    np.testing.assert_allclose(
        ops.convert_to_numpy(select_f(x, mask, coefficients)),
        ops.convert_to_numpy(formula(x, mask, coefficients)), atol=1e-6)
    for got, want in zip(actual, expected):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "silu"])
def test_clipped_selection_clips_the_polynomial_only(activation):
    """``selection(f, clipped=True)``: ``p(clip(x)) + m (f(x) - p(clip(x)))``
    and its gradients (inputs, mask, coefficients) as the backend
    differentiates that formula; no gradient through ``p`` outside."""
    select_f = selection(activation, clipped=True)
    assert select_f is selection(activation, clipped=True)
    assert select_f is not selection(activation)
    f = activation_function(activation)
    x = 4 * RNG.normal(size=(4, 3, 3, 2)).astype("float32")
    mask = RNG.integers(0, 2, size=(3, 3, 2)).astype("float32")
    coefficients = RNG.normal(size=(3, 2)).astype("float32")
    bounds = np.array([[-1.5, -2.5], [2.0, 1.0]], "float32")
    weights = RNG.normal(size=x.shape).astype("float32")
    ops = keras.ops

    def formula(x, mask, coefficients):
        polynomial = evaluate_polynomial(
            ops.clip(x, bounds[0], bounds[1]), coefficients)
        return polynomial + mask * (f(x) - polynomial)

    def clipped(x, mask, coefficients):
        return select_f(x, mask, coefficients, bounds)

    np.testing.assert_allclose(
        ops.convert_to_numpy(clipped(x, mask, coefficients)),
        ops.convert_to_numpy(formula(x, mask, coefficients)), atol=1e-5)
    expected = gradients(lambda *a: ops.sum(formula(*a) * weights),
                         x, mask, coefficients)
    actual = gradients(lambda *a: ops.sum(clipped(*a) * weights),
                       x, mask, coefficients)
    for got, want in zip(actual, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_selector_clip_range_in_training_only():
    layer = ReLUSelector(clip_range=True, refit_every=1)
    x = RNG.normal(0.0, 1.0, size=(64, 2, 2, 3)).astype("float32")
    x[0] = 30.0
    layer.build(x.shape)
    layer.mask.assign(np.zeros(layer.mask.shape, "float32"))
    layer.alpha.assign(np.full(layer.alpha.shape, -1.0, "float32"))
    assert layer.clips and layer.get_config()["clip_range"]
    trained = keras.ops.convert_to_numpy(layer(x, training=True))
    low, high = keras.ops.convert_to_numpy(layer.polynomial.fitted_bounds())
    coefficients = keras.ops.convert_to_numpy(layer.coefficients)
    np.testing.assert_allclose(
        trained, evaluate_polynomial(np.clip(x, low, high), coefficients),
        rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x)),
        evaluate_polynomial(x, coefficients), rtol=1e-5, atol=1e-4)
    assert not ReLUSelector(clip_range=True, fit="identity", degree=1).clips


def test_hysteresis_transitions_at_threshold():
    t = 0.003
    layer = ReLUSelector(threshold=t, granularity="channel")
    layer.build((None, 2, 2, 6))
    alpha = np.array([-0.01, -0.0031, -0.002, 0.002, 0.0031, 0.01], "float32")
    layer.alpha.assign(alpha)
    x = np.ones((1, 2, 2, 6), "float32")

    layer.mask.assign(np.ones(6, "float32"))  # on: turns off below -t only
    layer(x, training=True)
    assert keras.ops.convert_to_numpy(layer.mask).tolist() == [0, 0, 1, 1, 1, 1]

    layer.mask.assign(np.zeros(6, "float32"))  # off: turns on above +t only
    layer(x, training=True)
    assert keras.ops.convert_to_numpy(layer.mask).tolist() == [0, 0, 0, 0, 1, 1]

    layer.mask.assign(np.ones(6, "float32"))
    layer(x, training=False)  # inference never changes the mask
    assert keras.ops.convert_to_numpy(layer.mask).tolist() == [1] * 6


def test_selector_polynomial_refits_to_running_statistics():
    layer = ReLUSelector(refit_every=2, refit_steps=4, momentum=0.5)
    x = np.random.default_rng(2).normal(2.0, 3.0, size=(64, 4, 4, 3)).astype("float32")
    layer(x, training=True)  # step 0: stats := batch stats, refit
    polynomial = layer.polynomial
    mean = keras.ops.convert_to_numpy(polynomial.moving_mean)
    std = keras.ops.convert_to_numpy(polynomial.moving_std)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2)), atol=1e-4)
    np.testing.assert_allclose(std, np.sqrt(x.var(axis=(0, 1, 2)) + 1e-3), rtol=1e-4)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.coefficients),
        keras.ops.convert_to_numpy(dapa_coefficients(mean, std)),
        rtol=1e-5,
    )
    assert float(keras.ops.convert_to_numpy(polynomial.steps)) == 1.0
    layer(x, training=False)  # inference: no statistics, no step
    assert float(keras.ops.convert_to_numpy(polynomial.steps)) == 1.0


def test_identity_fit_is_x_and_not_trainable():
    layer = ReLUSelector(fit="identity", degree=1)
    x = RNG.normal(size=(2, 3, 3, 2)).astype("float32")
    layer.build(x.shape)
    layer.mask.assign(np.zeros(layer.mask.shape, "float32"))
    layer.alpha.assign(np.full(layer.alpha.shape, -1.0, "float32"))
    np.testing.assert_allclose(layer(x, training=True), x, atol=1e-6)
    assert [w.name for w in layer.trainable_weights] == ["alpha"]


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda: ReLUSelector(granularity="row"),
         "granularity must be one of .*, got 'row'"),
        (lambda: ReLUSelector(threshold=-1), "threshold must be >= 0, got -1"),
        (lambda: ReLUSelector(degree=3),
         r"degree must be one of \(1, 2\), got 3"),
        (lambda: ReLUSelector(fit="chebyshev"),
         "fit must be one of .*, got 'chebyshev'"),
    ],
    ids=["granularity", "threshold", "degree", "fit"],
)
def test_bad_arguments_raise(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="TensorFlow's graph executor runs an op as soon "
                           "as its inputs are ready")
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "silu"])
@pytest.mark.parametrize("clipped", [False, True])
def test_the_backward_pass_holds_no_float_tensor_but_x(activation, clipped):
    """In a traced train step, an activation-sized tensor that the
    backward pass reads but that does not depend on the upstream gradient
    is computed during the forward pass and held until the backward pass
    reaches the site: the selection's backward reads no such float tensor
    but ``x`` (and for ReLU-like activations holds ``x > 0``, one byte
    per element), ``clip(x)`` when clipped, and ``f(x)`` and ``f'(x)`` of
    a smooth activation, as its docstring says."""
    import tensorflow as tf

    select_f = selection(activation, clipped=clipped)
    shape, channels = (8, 4, 4, 3), 3
    specs = [tf.TensorSpec(shape), tf.TensorSpec(shape[1:]),
             tf.TensorSpec((3, channels)), tf.TensorSpec(shape)]
    if clipped:
        specs.append(tf.TensorSpec((2, channels)))

    @tf.function
    def step(x, mask, coefficients, upstream, *bounds):
        with tf.GradientTape() as tape:
            tape.watch([x, mask, coefficients])
            y = select_f(x, mask, coefficients, *bounds)
        return tape.gradient(y, [x, mask, coefficients],
                             output_gradients=upstream)

    graph = step.get_concrete_function(*specs).graph
    x, upstream = graph.inputs[0], graph.inputs[3]

    def source(tensor):  # through the identities custom_gradient adds
        while tensor.op.type in ("Identity", "IdentityN"):
            tensor = tensor.op.inputs[tensor.value_index
                                      if tensor.op.type == "IdentityN"
                                      else 0]
        return tensor

    late = {upstream.ref()}
    for op in graph.get_operations():  # in topological order
        if any(t.ref() in late for t in op.inputs):
            late.update(t.ref() for t in op.outputs)
    held = {
        source(t).op.name for op in graph.get_operations()
        if any(t.ref() in late for t in op.outputs)
        for t in op.inputs
        if t.ref() not in late and t.dtype == tf.float32
        and tuple(t.shape) == shape and source(t).ref() != x.ref()
    }
    # clip(x) when clipped; f(x) and f'(x) of silu
    assert len(held) == clipped + 2 * (activation == "silu"), held
