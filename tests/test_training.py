"""Training on a budget with BudgetTrainer and plain fit."""

import keras
import numpy as np
import pytest

from keras_autorep import (
    BudgetTrainer,
    count_relus,
    distillation_loss,
    harden,
    replace_relus,
)

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


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
