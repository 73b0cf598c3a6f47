"""Layer tests: build, call, gradients, hysteresis, DaPa, serialisation."""

import keras
import numpy as np
import pytest

from backend_utils import gradient_wrt
from keras_autorep import PartialReLU, PolynomialActivation, ReLUSelector
from keras_autorep.polynomial import dapa_coefficients, evaluate_polynomial

pytestmark = pytest.mark.backend_agnostic

RNG = np.random.default_rng(0)


def np_softplus(x):
    return np.log1p(np.exp(x))


def roundtrip(model, tmp_path):
    path = tmp_path / "model.keras"
    model.save(path)
    return keras.saving.load_model(path)


@pytest.mark.parametrize(
    "layer_fn",
    [
        lambda: ReLUSelector(),
        lambda: ReLUSelector(granularity="channel", threshold=0.01, degree=1),
        lambda: ReLUSelector(fit="identity", degree=1),
        lambda: PolynomialActivation(refit_every=5, refit_steps=50),
        lambda: PartialReLU(
            num_kept=3,
            kept_indices=[0, 7, 20],
            coefficients=RNG.normal(size=(3, 4)),
        ),
    ],
)
def test_layer_in_sequential_roundtrips(layer_fn, tmp_path):
    model = keras.Sequential(
        [keras.Input((4, 4, 3)), keras.layers.Conv2D(4, 3, padding="same"), layer_fn()]
    )
    x = RNG.normal(size=(5, 4, 4, 3)).astype("float32")
    model(x, training=True)  # one training step of statistics / masks
    reloaded = roundtrip(model, tmp_path)
    assert type(reloaded.layers[-1]) is type(model.layers[-1])
    assert reloaded.layers[-1].get_config() == model.layers[-1].get_config()
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


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


def test_dapa_standard_normal_values():
    c = keras.ops.convert_to_numpy(dapa_coefficients([0.0], [1.0]))[:, 0]
    np.testing.assert_allclose(c, [0.1995, 0.5, 0.1995], atol=5e-5)


@pytest.mark.parametrize("degree", [1, 2])
@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (1.5, 0.7), (-2.0, 3.0), (0.3, 0.05)])
def test_dapa_closed_form_matches_least_squares(degree, mean, std):
    samples = np.random.default_rng(1).normal(mean, std, size=2_000_000)
    fitted = np.polynomial.polynomial.polyfit(samples, np.maximum(samples, 0), degree)
    closed = keras.ops.convert_to_numpy(dapa_coefficients([mean], [std], degree))[:, 0]
    # Compare the fitted functions over the bulk of the distribution.
    grid = np.linspace(mean - 2 * std, mean + 2 * std, 41)
    np.testing.assert_allclose(
        np.polynomial.polynomial.polyval(grid, closed),
        np.polynomial.polynomial.polyval(grid, fitted),
        atol=5e-3 * max(std, 1.0),
    )


def test_polynomial_refits_to_running_statistics_then_trains_freely():
    layer = PolynomialActivation(refit_every=2, refit_steps=4, momentum=0.5)
    x = np.random.default_rng(2).normal(2.0, 3.0, size=(64, 8, 8, 3)).astype("float32")
    layer(x, training=True)  # step 0: stats := batch stats, refit
    mean = keras.ops.convert_to_numpy(layer.moving_mean)
    std = keras.ops.convert_to_numpy(layer.moving_std)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2)), atol=1e-4)
    np.testing.assert_allclose(std, np.sqrt(x.var(axis=(0, 1, 2)) + 1e-3), rtol=1e-4)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.coefficients),
        keras.ops.convert_to_numpy(dapa_coefficients(mean, std)),
        rtol=1e-5,
    )
    for _ in range(4):  # steps 1..4; the last refit happens at step 2
        layer(x, training=True)
    frozen = np.full(layer.coefficients.shape, 0.25, "float32")
    layer.coefficients.assign(frozen)  # as if backprop had changed them
    layer(x, training=True)  # step 5 > refit_steps: no refit
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.coefficients), frozen)


def test_identity_fit_is_x_and_not_trainable():
    layer = ReLUSelector(fit="identity", degree=1)
    x = RNG.normal(size=(2, 3, 3, 2)).astype("float32")
    layer.build(x.shape)
    layer.mask.assign(np.zeros(layer.mask.shape, "float32"))
    layer.alpha.assign(np.full(layer.alpha.shape, -1.0, "float32"))
    np.testing.assert_allclose(layer(x, training=True), x, atol=1e-6)
    assert all(w.name != "coefficients" for w in layer.trainable_weights)


def masked_reference(x, mask, coefficients):
    poly = evaluate_polynomial(x, coefficients)
    return np.where(mask, np.maximum(x, 0), poly)


@pytest.mark.parametrize("kept", [0, 5, 36])
def test_partial_relu_matches_masked_formula(kept):
    shape = (3, 3, 4)
    indices = RNG.choice(36, size=kept, replace=False)
    coefficients = RNG.normal(size=(3, 4)).astype("float32")
    layer = PartialReLU(num_kept=kept, kept_indices=indices, coefficients=coefficients)
    x = RNG.normal(size=(2,) + shape).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    mask = np.zeros(36, bool)
    mask[indices] = True
    np.testing.assert_allclose(
        y, masked_reference(x, mask.reshape(shape), coefficients), atol=1e-5
    )
    np.testing.assert_array_equal(layer.kept_mask(), mask.reshape(shape))
    assert not layer.trainable_weights


def test_partial_relu_rejects_bad_positions():
    layer = PartialReLU(num_kept=2)
    layer.build((None, 2, 2, 1))
    for bad in ([0], [1, 1], [0, 4], [-1, 2]):
        with pytest.raises(ValueError):
            layer.set_kept_positions(bad)
    with pytest.raises(ValueError, match="exceeds"):
        PartialReLU(num_kept=5).build((None, 2, 2, 1))


@pytest.mark.parametrize(
    "factory",
    [
        lambda: ReLUSelector(granularity="row"),
        lambda: ReLUSelector(threshold=-1),
        lambda: PolynomialActivation(degree=3),
        lambda: PolynomialActivation(fit="chebyshev"),
        lambda: PolynomialActivation(momentum=1.0),
        lambda: PartialReLU(num_kept=-1),
    ],
)
def test_bad_arguments_raise(factory):
    with pytest.raises(ValueError):
        factory()
