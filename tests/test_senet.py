"""SENet: sensitivity, allocation from it, mask identification, training."""

import keras
import numpy as np
import pytest

from keras_autorep import count_relus, harden, replace_relus
from keras_autorep.conversion import selectors
from keras_autorep.methods import (
    DistillationTrainer,
    allocate_by_sensitivity,
    attention_map,
    attention_transfer_loss,
    current_masks,
    random_masks,
    relu_sensitivity,
    set_masks,
    site_sizes,
    top_masks,
    train_senet,
)
from keras_autorep.methods.distill import fit_phase
from keras_autorep.methods.senet import MismatchTrainer
from tiny_models import (
    LOSS,
    all_trainable,
    tiny_cnn,
    tiny_data,
    trained_teacher,
)


def fold_model():
    """Classifies ``|x0 - 0.5| > 0.25`` exactly, by hand-set weights.

    ``always_positive`` sees ``x + 1 > 0`` for ``x`` in ``[0, 1]``, so it
    is the identity there; ``crucial`` folds ``x0 - 0.5`` into
    ``|x0 - 0.5|``; without it the logits are constant.
    """
    inputs = keras.Input((2,))
    a = keras.layers.Dense(2, name="shift")(inputs)
    a = keras.layers.ReLU(name="always_positive")(a)
    h = keras.layers.Dense(2, name="fold")(a)
    h = keras.layers.ReLU(name="crucial")(h)
    logits = keras.layers.Dense(2, name="logits")(h)
    model = keras.Model(inputs, logits)
    model.get_layer("shift").set_weights([np.eye(2), np.ones(2)])
    model.get_layer("fold").set_weights(
        [np.array([[1.0, -1.0], [0.0, 0.0]]), np.array([-1.5, 1.5])]
    )
    model.get_layer("logits").set_weights(
        [np.array([[20.0, 0.0], [20.0, 0.0]]), np.array([-5.0, 0.0])]
    )
    return model


def fold_data(n=200):
    x = np.random.default_rng(0).random((n, 2)).astype("float32")
    return x, (np.abs(x[:, 0] - 0.5) <= 0.25).astype("int32")


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i):
        s = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return self.x[s], self.y[s]


@pytest.mark.backend_agnostic
def test_sensitivity_known_answer():
    model = fold_model()
    x, y = fold_data()
    predictions = np.argmax(keras.ops.convert_to_numpy(model(x)), axis=1)
    assert np.array_equal(predictions, y)  # the model solves the task
    scores = relu_sensitivity(model, (x, y), batch_size=64)
    assert scores == {"always_positive": 0.0, "crucial": 1.0}
    assert relu_sensitivity(model, Batches(x, y, 50), steps=2) == scores


@pytest.mark.backend_agnostic
def test_sensitivity_on_selector_model_restores_masks():
    student = replace_relus(fold_model(), fit="identity", degree=1)
    masks = random_masks(student, {"always_positive": 1, "crucial": 1}, 0)
    set_masks(student, masks)
    scores = relu_sensitivity(student, fold_data())
    assert scores == {"always_positive": 0.0, "crucial": 1.0}
    after = current_masks(student)
    assert all(np.array_equal(after[n], masks[n]) for n in masks)


def test_allocate_by_sensitivity_properties():
    rng = np.random.default_rng(0)
    for case in range(300):
        n = rng.integers(1, 8)
        names = [f"site{i}" for i in range(n)]
        sizes = dict(zip(names, rng.integers(1, 5000, n).tolist()))
        raw = rng.random(n) * (rng.random(n) > 0.3)
        sens = dict(zip(names, (raw / raw.sum() if raw.sum() else raw)))
        total = sum(sizes.values())
        budget = int(rng.integers(0, total + 1))
        counts = allocate_by_sensitivity(sizes, sens, budget)
        assert sum(counts.values()) == budget, case
        assert all(0 <= counts[k] <= sizes[k] for k in names), case
        frac = {k: counts[k] / sizes[k] for k in names}
        for a in names:
            for b in names:
                if sens[a] > sens[b]:  # more sensitive: no smaller fraction
                    slack = 1 / sizes[a] + 1 / sizes[b]
                    assert frac[a] >= frac[b] - slack - 1e-12, case
        sensitive = sum(sizes[k] for k in names if sens[k] > 0)
        if budget <= sensitive:
            assert all(counts[k] == 0 for k in names if sens[k] == 0), case


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


@pytest.mark.backend_agnostic
def test_distillation_trainer_adds_kd_and_at_in_training_only():
    keras.utils.set_random_seed(0)
    teacher = tiny_cnn()
    student = replace_relus(teacher, fit="identity", degree=1)
    trainer = DistillationTrainer(student, teacher, attention_weight=1.0)
    x, _ = tiny_data(16)
    trainer(x, training=True)
    assert len(trainer.losses) == 2
    assert max(float(v) for v in trainer.losses) < 1e-4  # student == teacher
    set_masks(student, random_masks(
        student, {"conv1_relu": 0, "relu2": 0}, seed=0))
    trainer(x, training=True)
    assert all(float(v) > 1e-4 for v in trainer.losses)
    trainer(x, training=False)
    assert not trainer.losses
    assert teacher.trainable  # never trained, yet left as it was


@pytest.mark.backend_agnostic
def test_mismatch_is_zero_where_the_student_equals_the_teacher():
    keras.utils.set_random_seed(0)
    teacher = tiny_cnn()
    student = replace_relus(teacher, fit="identity", degree=1)
    masks = random_masks(student, {"conv1_relu": 128, "relu2": 128}, seed=0)
    set_masks(student, masks, freeze=True)
    trainer = MismatchTrainer(student, teacher)
    x, y = tiny_data(64)
    fit_phase(trainer, (x, y), epochs=1, lr=0.0, phase="identify",
              batch_size=16, verbose=0)
    scores = trainer.scores()["conv1_relu"]
    kept = masks["conv1_relu"]
    # First site: teacher relu(z), student relu(z) where kept, z elsewhere;
    # four batches of 16 each add their mean of |relu(z) - z| = relu(-z).
    z = keras.Model(student.inputs[0], student.get_layer("conv1").output)(x)
    expected = 4 * np.maximum(-keras.ops.convert_to_numpy(z), 0).mean(0)
    assert np.all(scores[kept] == 0.0)
    np.testing.assert_allclose(scores[~kept], expected[~kept], rtol=1e-4,
                               atol=1e-6)
    mismatched = int(np.sum(scores > 0))
    chosen = top_masks(student, trainer.scores(),
                       counts={"conv1_relu": mismatched, "relu2": 10})
    np.testing.assert_array_equal(chosen["conv1_relu"], scores > 0)


def test_train_senet_keeps_sensitivity_counts_exactly():
    data = tiny_data()
    teacher = trained_teacher(data)
    budget = 120
    phases = []

    def callbacks(phase):
        phases.append(phase)
        return []

    expected = allocate_by_sensitivity(
        site_sizes(replace_relus(teacher, fit="identity", degree=1)),
        relu_sensitivity(teacher, data, batch_size=64),
        budget,
    )
    student = train_senet(
        teacher, budget, data, (data[0][:64], data[1][:64]), epochs=1,
        finetune_epochs=2, lr=1e-2, batch_size=32, callbacks=callbacks,
        verbose=0,
    )
    assert phases == ["identify", "finetune"]
    kept = {row.layer: row.kept for row in count_relus(student).rows}
    assert kept == expected and sum(kept.values()) == budget
    assert all(not s.alpha.trainable for s in selectors(student))
    assert all_trainable(teacher)
    hardened = harden(student, budget)
    assert count_relus(hardened).kept == budget
    hardened.compile(loss=LOSS, metrics=["accuracy"])
    assert hardened.evaluate(*data, verbose=0)[1] > 0.6  # chance: 1/3
