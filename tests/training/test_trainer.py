"""keras_autorep.training: the student trainers (BudgetTrainer,
DistillationTrainer), their loss terms and the fit helpers."""

import keras
import numpy as np
import pytest

import keras_autorep
from keras_autorep import count_relus, harden, replace_relus
from keras_autorep.graph import random_masks, set_masks, top_masks
from keras_autorep.training import (
    ActivationMismatch,
    AttentionTransfer,
    BudgetHinge,
    BudgetTrainer,
    Distillation,
    DistillationTrainer,
    StudentTrainer,
    attention_map,
    attention_transfer_loss,
    distillation_loss,
)
from keras_autorep.training.fit import fit_phase, phase_callbacks, split_data
from tiny_models import LOSS, tiny_cnn, tiny_data


def small_cnn(input_shape=(16, 16, 3), classes=10):
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Rescaling(1 / 255.0) if input_shape[0] == 32 else keras.layers.Identity(),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes),
        ]
    )


def test_distillation_loss_matches_numpy():
    rng = np.random.default_rng(0)
    t, s = rng.normal(size=(2, 4, 5)).astype("float32")
    T = 4.0

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    p, q = softmax(t / T), softmax(s / T)
    expected = np.mean(np.sum(p * (np.log(p) - np.log(q)), -1)) * T**2
    np.testing.assert_allclose(keras.ops.convert_to_numpy(distillation_loss(t, s, T)), expected, rtol=1e-5)
    assert float(distillation_loss(t, t, T)) == pytest.approx(0.0, abs=1e-6)


def test_budget_penalty_is_hinge_over_total():
    student = replace_relus(small_cnn())
    trainer = BudgetTrainer(student, budget="25%", budget_weight=8.0)
    total = count_relus(student).total
    assert trainer.total_relus == total and trainer.budget == total // 4
    assert float(trainer.budget_penalty(float(total) / 4 - 1)) == 0.0
    assert float(trainer.budget_penalty(float(total))) == pytest.approx(8.0 * 0.75, rel=1e-5)
    assert float(trainer.kept_relus()) == total


def test_trainer_rejects_models_without_selectors_and_bad_budgets():
    with pytest.raises(ValueError, match="replace_relus"):
        BudgetTrainer(small_cnn(), budget=10)
    student = replace_relus(small_cnn())
    with pytest.raises(ValueError, match="exceeds"):
        BudgetTrainer(student, budget=10**9)
    with pytest.raises(ValueError, match="abc"):
        BudgetTrainer(student, budget="abc")


def test_fit_logs_relu_count_and_moves_it_down():
    keras.utils.set_random_seed(1)
    teacher = small_cnn()
    student = replace_relus(teacher)
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    trainer = BudgetTrainer(student, budget="10%", teacher=teacher, budget_weight=50.0)
    trainer.compile(optimizer=keras.optimizers.Adam(2e-2), loss=LOSS, metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((128, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 10, 128)
    history = trainer.fit(x, y, batch_size=16, epochs=3, validation_data=(x[:32], y[:32]), verbose=0)
    counts = history.history["relu_count"]
    assert len(counts) == 3 and "val_relu_count" in history.history
    assert counts[-1] < counts[0] < count_relus(teacher).total
    assert counts[-1] == count_relus(student).kept
    # The teacher is not trained, and is left trainable: a second student
    # built from it trains its weights too.
    for before, after in zip(teacher_weights, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert teacher.trainable
    again = BudgetTrainer(replace_relus(teacher), budget="10%", teacher=teacher)
    assert len(again.trainable_weights) == len(trainer.trainable_weights) > 0
    assert not {id(v) for v in teacher.weights} & {
        id(v) for v in again.trainable_weights}


def test_short_fit_on_real_cifar10_falls_towards_budget(cifar10_slice):
    """A few hundred steps on real images: the count falls towards 10%."""
    (x_train, y_train), (x_test, y_test), info = cifar10_slice
    keras.utils.set_random_seed(0)
    model = small_cnn((32, 32, 3), info.num_classes)
    total = count_relus(model).total
    budget = total // 10
    student = replace_relus(model)
    trainer = BudgetTrainer(student, budget=budget, budget_weight=100.0)
    # 3e-3: the count falls steadily; 1e-2 reaches it in one epoch but
    # leaves the accuracy at the mercy of the seed.
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3), loss=LOSS, metrics=["accuracy"])
    history = trainer.fit(
        x_train.astype("float32"), y_train, batch_size=32, epochs=4,
        validation_data=(x_test.astype("float32"), y_test), verbose=0,
    )  # 4 x 63 = 252 steps
    counts = history.history["relu_count"]
    assert counts == sorted(counts, reverse=True)
    assert counts[-1] < 0.5 * total
    hardened = harden(student, budget=budget)
    assert count_relus(hardened).kept <= budget
    hardened.compile(loss=LOSS, metrics=["accuracy"])
    _, accuracy = hardened.evaluate(x_test.astype("float32"), y_test, verbose=0)
    assert accuracy > 0.15  # better than chance (0.10) on 10 classes


def test_budget_trainer_rejects_relus_outside_selectors_above_the_budget():
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.ReLU(name="plain")(inputs)  # 192 ReLUs, no selector
    h = keras.layers.Conv2D(4, 3, padding="same")(h)
    h = keras_autorep.ReLUSelector(name="site")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    student = keras.Model(inputs, keras.layers.Dense(3)(h))
    trainer = BudgetTrainer(student, budget=200)
    assert trainer.relu_counter.fixed == 192
    assert trainer.count() == 192 + 256
    with pytest.raises(ValueError,
                       match="ReLUs kept outside selectors, more than the "
                             "budget"):
        BudgetTrainer(student, budget=191)


def test_package_exports_the_trainers():
    assert keras_autorep.BudgetTrainer is BudgetTrainer
    assert keras_autorep.DistillationTrainer is DistillationTrainer
    assert keras_autorep.StudentTrainer is StudentTrainer
    assert keras_autorep.distillation_loss is distillation_loss
    assert issubclass(BudgetTrainer, StudentTrainer)
    assert issubclass(DistillationTrainer, StudentTrainer)


def test_terms_apply_in_training_steps_only():
    """Validation loss is the compiled loss alone."""
    keras.utils.set_random_seed(0)
    teacher = tiny_cnn()
    student = replace_relus(teacher)
    trainer = BudgetTrainer(student, budget=10, teacher=teacher,
                            budget_weight=50.0)
    assert [type(t) for t in trainer.terms] == [Distillation, BudgetHinge]
    trainer.compile(optimizer="adam", loss=LOSS)
    x, y = tiny_data(32)
    logits = trainer(x, training=False)
    ce = float(LOSS(y, logits))
    evaluated = float(trainer.compute_loss(x, y, logits, training=False))
    assert evaluated == pytest.approx(ce, rel=1e-5)
    trained = float(trainer.compute_loss(x, y, logits, training=True))
    # the hinge on 512 kept of a 10 budget: 50 * (512 - 10) / 512
    assert trained - ce == pytest.approx(50.0 * 502 / 512, rel=1e-4)
    history = trainer.fit(x, y, batch_size=32, epochs=1,
                          validation_data=(x, y), verbose=0).history
    val_logits = student(x, training=False)
    assert history["val_loss"][0] == pytest.approx(
        float(LOSS(y, val_logits)), rel=1e-4)
    assert history["val_relu_count"][0] == count_relus(student).kept


# ------------------------------------------------ distillation and attention


@pytest.mark.backend_agnostic
def test_attention_transfer_matches_numpy():
    rng = np.random.default_rng(0)
    t, s = rng.normal(size=(2, 3, 4, 4, 5)).astype("float32")

    def at(x):
        a = (x**2).sum(-1).reshape(len(x), -1)
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    np.testing.assert_allclose(attention_map(t), at(t), rtol=1e-5)
    expected = np.mean(np.linalg.norm(at(t) - at(s), axis=1))
    np.testing.assert_allclose(
        attention_transfer_loss([t, t], [s, t]), expected / 2, rtol=1e-4
    )
    assert float(attention_transfer_loss([t], [t])) < 1e-5


def extra_loss(trainer, x, y):
    """What the trainer's terms add to the compiled loss in a training step
    (a training call first: it records the activations the terms read)."""
    logits = trainer(x, training=True)
    trained = trainer.compute_loss(x, y, logits, training=True)
    compiled = trainer.compute_loss(x, y, logits, training=False)
    assert float(compiled) == pytest.approx(float(LOSS(y, logits)), rel=1e-5)
    return float(trained) - float(compiled)


@pytest.mark.backend_agnostic
def test_distillation_trainer_adds_kd_and_at_in_training_only():
    keras.utils.set_random_seed(0)
    teacher = tiny_cnn()
    student = replace_relus(teacher, fit="identity", degree=1)
    trainer = DistillationTrainer(student, teacher, attention_weight=1.0)
    kd_only = DistillationTrainer(student, teacher)
    at_only = DistillationTrainer(student, teacher, distillation_weight=0.0,
                                  attention_weight=1.0)
    assert [type(t) for t in trainer.terms] == [Distillation,
                                                AttentionTransfer]
    assert [type(t) for t in kd_only.terms] == [Distillation]
    assert [type(t) for t in at_only.terms] == [AttentionTransfer]
    x, y = tiny_data(16)
    for each in (trainer, kd_only, at_only):
        each.compile(loss=LOSS)
        assert abs(extra_loss(each, x, y)) < 1e-4  # student == teacher
    set_masks(student, random_masks(
        student, {"conv1_relu": 0, "relu2": 0}, seed=0))
    for each in (kd_only, at_only):
        assert extra_loss(each, x, y) > 1e-4
    assert extra_loss(trainer, x, y) == pytest.approx(
        extra_loss(kd_only, x, y) + extra_loss(at_only, x, y), rel=1e-4)
    assert teacher.trainable  # never trained, yet left as it was
    with pytest.raises(ValueError, match="need"):
        StudentTrainer(student, None, [AttentionTransfer(1.0)])


@pytest.mark.backend_agnostic
def test_mismatch_is_zero_where_the_student_equals_the_teacher():
    keras.utils.set_random_seed(0)
    teacher = tiny_cnn()
    student = replace_relus(teacher, fit="identity", degree=1)
    masks = random_masks(student, {"conv1_relu": 128, "relu2": 128}, seed=0)
    set_masks(student, masks, freeze=True)
    mismatch = ActivationMismatch()
    trainer = DistillationTrainer(student, teacher, distillation_weight=0.5,
                                  terms=[mismatch])
    x, y = tiny_data(64)
    fit_phase(trainer, (x, y), epochs=1, lr=0.0, phase="identify",
              batch_size=16, verbose=0)
    scores = mismatch.scores()["conv1_relu"]
    kept = masks["conv1_relu"]
    # First site: teacher relu(z), student relu(z) where kept, z elsewhere;
    # four batches of 16 each add their mean of |relu(z) - z| = relu(-z).
    z = keras.Model(student.inputs[0], student.get_layer("conv1").output)(x)
    expected = 4 * np.maximum(-keras.ops.convert_to_numpy(z), 0).mean(0)
    assert np.all(scores[kept] == 0.0)
    np.testing.assert_allclose(scores[~kept], expected[~kept], rtol=1e-4,
                               atol=1e-6)
    mismatched = int(np.sum(scores > 0))
    chosen = top_masks(student, mismatch.scores(),
                       counts={"conv1_relu": mismatched, "relu2": 10})
    np.testing.assert_array_equal(chosen["conv1_relu"], scores > 0)


def test_fit_helpers():
    assert phase_callbacks(None, "search") == []
    marker = keras.callbacks.Callback()
    assert phase_callbacks([marker], "search") == [marker]
    assert phase_callbacks(lambda phase: [phase], "finetune") == ["finetune"]
    x, y = np.zeros((2, 3)), np.zeros(2)
    assert split_data((x, y)) == (x, y)
    assert split_data("dataset") == ("dataset", None)
    with pytest.raises(ValueError, match="pair"):
        split_data((x, y, y))
    student = replace_relus(tiny_cnn())
    assert fit_phase(DistillationTrainer(student), tiny_data(8), epochs=0,
                     lr=1e-3, phase="search") is None


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("how", ["fit", "train_on_batch"])
def test_statistics_stop_when_the_refit_phase_ends(how):
    """Steps after the refit phase leave the running statistics alone; the
    phase itself still updates them on every step."""
    x, y = tiny_data(64)
    student = replace_relus(tiny_cnn(), refit_steps=4, refit_every=2)
    polynomials = [s.polynomial for s in keras_autorep.graph.selectors(
        student)]
    trainer = BudgetTrainer(student, "50%")
    trainer.compile(keras.optimizers.Adam(1e-3), LOSS)

    def statistics():
        return [keras.ops.convert_to_numpy(v).copy() for p in polynomials
                for v in (p.moving_mean, p.moving_std, p.steps)]

    if how == "fit":
        trainer.fit(x, y, batch_size=16, epochs=1, verbose=0)  # 4 steps
    else:
        for start in range(0, 64, 16):
            trainer.train_on_batch(x[start:start + 16], y[start:start + 16])
    during = statistics()
    assert all(float(p.steps.value) == 4 for p in polynomials)
    assert all(p.track_statistics for p in polynomials)
    if how == "fit":
        trainer.fit(x, y, batch_size=16, epochs=1, verbose=0)
    else:
        trainer.train_on_batch(x[:16], y[:16])
    assert not any(p.track_statistics for p in polynomials)
    for before, after in zip(during, statistics()):
        np.testing.assert_array_equal(before, after)
    assert np.isfinite(trainer.evaluate(x, y, verbose=0)[0])
