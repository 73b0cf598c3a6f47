"""Range control in training (keras_autorep.training.ranges): the
out-of-range metrics, the range penalty, brightness and contrast scaling,
on synthetic data and on a real CIFAR-10 slice."""

import keras
import numpy as np
import pytest

from keras_autorep import ReLUSelector, replace_relus
from keras_autorep.layers.polynomial_activation import RANGE_STDS
from keras_autorep.training import (
    BudgetTrainer,
    InputScaling,
    RangePenalty,
    SiteRange,
    Stability,
)
from keras_autorep.training.losses import Step
from keras_autorep.training.ranges import (
    MAX_DEVIATION,
    PENALTY_POWER,
    SCALED_SHARE,
    ranged_sites,
)
from tiny_models import LOSS, tiny_cnn

pytestmark = pytest.mark.backend_agnostic


def numpy(value):
    return keras.ops.convert_to_numpy(value)


def test_site_range_counts_removed_inputs_beyond_the_fitted_range():
    site = ReLUSelector(granularity="channel")
    site.build((None, 4, 4, 2))
    site.polynomial.moving_mean.assign([1.0, -2.0])
    site.polynomial.moving_std.assign([0.5, 2.0])
    site.mask.assign([0.0, 1.0])  # channel 0 removed, channel 1 kept
    x = np.random.default_rng(0).normal(0.0, 3.0, (8, 4, 4, 2))
    x = x.astype("float32")
    measured = SiteRange.of(site, x)
    radius = RANGE_STDS * np.array([0.5, 2.0])
    deviation = np.abs(x - np.array([1.0, -2.0])) / radius
    np.testing.assert_allclose(numpy(measured.deviation), deviation,
                               rtol=1e-5)
    outside, computed = (float(v) for v in measured.counts())
    assert computed == 8 * 16  # the removed channel's elements
    assert outside == np.sum(deviation[..., 0] > 1.0) > 0
    powers = np.minimum(deviation[..., 0], MAX_DEVIATION) ** PENALTY_POWER
    np.testing.assert_allclose(float(measured.penalty()),
                               powers.sum() / x.size, rtol=1e-4)
    penalty = RangePenalty(3.0)(Step(logits=None, kept_relus=None,
                                     ranges=(measured, measured)))
    np.testing.assert_allclose(float(penalty), 3.0 * powers.sum() / x.size,
                               rtol=1e-4)
    x[0, 0, 0, 0] = 1e30  # an overflowing input counts as MAX_DEVIATION
    assert np.isfinite(float(SiteRange.of(site, x).penalty()))
    assert float(RangePenalty(1.0)(Step(None, None))) == 0.0
    with pytest.raises(ValueError, match="range penalty"):
        RangePenalty(float("inf"))
    identity = ReLUSelector(replacement="identity")
    assert ranged_sites([site, identity]) == [site]


def test_stability_defaults_are_off_and_checked():
    assert Stability().terms() == [] and Stability().scaling() is None
    stability = Stability(range_penalty=2.0, brightness=2.0)
    assert [type(t) for t in stability.terms()] == [RangePenalty]
    assert isinstance(stability.scaling(), InputScaling)
    for bad in (dict(brightness=0.5), dict(contrast=float("nan"))):
        with pytest.raises(ValueError, match="brightness and contrast"):
            Stability(**bad).scaling()


def test_input_scaling_brightens_and_stretches_real_images(cifar10_slice):
    (x, _), _, _ = cifar10_slice
    images = x[:512].astype("float32") / 255.0
    scaled = numpy(InputScaling(2.5, 1.5, seed=3)(images))
    again = numpy(InputScaling(2.5, 1.5, seed=3)(images))
    np.testing.assert_array_equal(scaled, again)
    unchanged = np.all(np.isclose(scaled, images, atol=1e-6), axis=(1, 2, 3))
    assert abs(unchanged.mean() - (1 - SCALED_SHARE)) < 0.1
    changed = ~unchanged
    assert scaled.max() > 1.5 and scaled.min() < 0.0  # beyond [0, 1]
    # each scaled image is b * (m + c * (x - m)): mean and spread grow by
    # b and b * c, within the largest factors
    mean = images.mean(axis=(1, 2, 3))
    brightness = scaled.mean(axis=(1, 2, 3))[changed] / mean[changed]
    spread = (scaled.std(axis=(1, 2, 3))[changed]
              / images.std(axis=(1, 2, 3))[changed])
    assert np.all((brightness > 1 - 1e-4) & (brightness < 2.5 + 1e-4))
    assert np.all((spread / brightness > 1 - 1e-3)
                  & (spread / brightness < 1.5 + 1e-3))
    assert brightness.max() > 2.0


def test_trainer_logs_out_of_range_per_site_and_scales_what_the_teacher_sees():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 1.0, (64, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, 64)
    teacher = tiny_cnn()
    student = replace_relus(teacher)
    seen = []

    class Record:
        needs_teacher = True
        needs_activations = False

        def __call__(self, step):
            seen.append(step)
            return keras.ops.zeros(())

    trainer = BudgetTrainer(student, "50%", teacher=teacher,
                            stability=Stability(brightness=3.0, seed=0))
    trainer.terms.append(Record())
    trainer.compile(optimizer="adam", loss=LOSS)
    history = trainer.fit(x, y, batch_size=32, epochs=1, verbose=0,
                          validation_data=(x, y)).history
    sites = [site.name for site in ranged_sites(trainer.sites)]
    assert len(sites) == 2
    for prefix in ("", "val_"):
        for name in ["out_of_range"] + [f"out_of_range_{s}" for s in sites]:
            assert 0.0 <= history[prefix + name][-1] <= 1.0
    # the teacher's logits come from the scaled batch the student saw
    logits = trainer(x, training=True)
    assert not np.allclose(numpy(trainer._forward.seen), x)
    step = trainer._step(logits, trainer.kept_relus(), None, ())
    np.testing.assert_allclose(numpy(step.teacher_logits),
                               numpy(teacher(trainer._forward.seen)), rtol=1e-5,
                               atol=1e-5)


def _out_of_range_at(student, images):
    """Share of the student's removed polynomial inputs out of range."""
    sites = ranged_sites([layer for layer in student.layers
                          if isinstance(layer, ReLUSelector)])
    view = keras.Model(student.inputs, [site.input for site in sites])
    outside = computed = 0.0
    for site, inputs in zip(sites, view.predict(images, verbose=0)):
        counts = SiteRange.of(site, inputs).counts()
        outside += float(counts[0])
        computed += float(counts[1])
    return outside / computed


def _train_on_real_images(cifar10_slice, stability, clip_range=False):
    (x, y), _, info = cifar10_slice
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Normalization(mean=info.mean, variance=np.square(
            info.std)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(16, 3, strides=2, padding="same",
                            activation="relu"),
        keras.layers.Conv2D(32, 3, strides=2, padding="same",
                            activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(info.num_classes),
    ])
    student = replace_relus(model, refit_every=5, clip_range=clip_range)
    trainer = BudgetTrainer(student, 0, budget_weight=100.0,
                            stability=stability)
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3), loss=LOSS)
    history = trainer.fit(x[:1024].astype("float32") / 255.0, y[:1024],
                          batch_size=64, epochs=3, verbose=0).history
    return student, history


def test_range_control_keeps_brighter_real_images_in_range(cifar10_slice):
    """On real CIFAR-10 images, a student trained without range control
    sends far more polynomial inputs of 2x brighter images out of range
    than one trained on brightened batches under the range penalty; and
    clipping in training leaves the measured range alone but bounds what
    the polynomials see."""
    (x, _), _, _ = cifar10_slice
    bright = 2.0 * x[1024:1280].astype("float32") / 255.0
    plain, _ = _train_on_real_images(cifar10_slice, Stability())
    controlled, history = _train_on_real_images(
        cifar10_slice, Stability(range_penalty=1.0, brightness=2.5, seed=0),
        clip_range=True)
    without, with_control = (_out_of_range_at(student, bright)
                             for student in (plain, controlled))
    assert without > 0.01
    assert with_control < without / 3
    assert history["out_of_range"][-1] < history["out_of_range"][0]
