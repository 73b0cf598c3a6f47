"""keras_autorep.allocation: ReLU sensitivity, allocate (free, uniform,
sensitivity, tuned) and seeding students at an allocation. (The pure
splits are tested with keras_autorep.budgets.)"""

import json

import keras
import numpy as np
import pytest

import keras_autorep
from keras_autorep import BudgetTrainer, count_relus, replace_relus
from keras_autorep.adapters.keras_tuner_seed import tuner_seed
from keras_autorep.allocation import (
    ALLOCATIONS,
    allocate,
    allocate_by_sensitivity,
    apply_allocation,
    relu_sensitivity,
)
from keras_autorep.allocation.tuned import (
    TUNERS,
    AllocationHyperModel,
    site_groups,
    tune_allocation,
)
from keras_autorep.architectures import resnet_small
from keras_autorep.graph import (
    current_masks,
    random_masks,
    selectors,
    set_masks,
    site_sizes,
)
from tiny_models import all_trainable, tiny_cnn, tiny_data


def test_site_groups_by_stage():
    student = replace_relus(resnet_small(input_shape=(8, 8, 3), width=4))
    groups = site_groups(student)
    assert sorted(set(groups.values())) == ["stage0", "stage1", "stage2"]
    assert groups["stem_relu"] == groups["stage1_block0_relu2"] == "stage0"
    assert groups["stage3_block0_relu1"] == "stage2"
    assert site_groups(student, "layer") == {n: n for n in groups}
    hypermodel = AllocationHyperModel(student, "10%")
    total = count_relus(student).total
    rng = np.random.default_rng(0)
    for _ in range(50):
        weights = dict(zip(["stage0", "stage1", "stage2"],
                           rng.uniform(0.05, 1.0, 3)))
        counts = hypermodel.counts(weights)
        assert sum(counts.values()) == total // 10
        assert all(counts[n] <= s for n, s in site_sizes(student).items())


def test_allocate_free_uniform_sensitivity():
    keras.utils.set_random_seed(0)
    teacher = tiny_cnn()
    student = replace_relus(teacher)
    assert allocate("free", student, 100) is None
    assert allocate("uniform", student, "25%") == {
        "conv1_relu": 64, "relu2": 64}
    counts = allocate("sensitivity", student, 101, teacher=teacher,
                      train_data=tiny_data(64))
    assert sum(counts.values()) == 101
    with pytest.raises(ValueError, match="allocation must be one of"):
        allocate("greedy", student, 100)
    with pytest.raises(ValueError, match="needs val_data and run_dir"):
        allocate("tuned", student, 100, train_data=tiny_data(64))


@pytest.mark.backend_agnostic
def test_apply_allocation_seeds_autorep_or_freezes():
    keras.utils.set_random_seed(0)
    student = replace_relus(tiny_cnn())
    counts = {"conv1_relu": 10, "relu2": 200}
    alphas = {s.name: keras.ops.convert_to_numpy(s.alpha)
              for s in selectors(student)}
    masks = apply_allocation(student, counts, by="alpha")
    for site in selectors(student):
        assert int(masks[site.name].sum()) == counts[site.name]
        assert alphas[site.name][masks[site.name]].min() >= (
            alphas[site.name][~masks[site.name]].max())
        # unfrozen, consistent with hysteresis: a training step keeps them
        assert site.alpha.trainable
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(site.hysteresis_mask()) > 0.5,
            masks[site.name])
    assert count_relus(student).kept == 210
    BudgetTrainer(student, 210)(tiny_data(4)[0], training=True)
    assert count_relus(student).kept == 210
    masks = apply_allocation(student, counts, seed=1, freeze=True)
    assert all(not s.alpha.trainable for s in selectors(student))
    after = current_masks(student)
    assert all(np.array_equal(after[n], masks[n]) for n in masks)


def test_tuned_allocation_resumes(tmp_path):
    keras.utils.set_random_seed(0)
    teacher = tiny_cnn()
    student = replace_relus(teacher)
    x, y = tiny_data(96)
    runs = []
    options = dict(
        teacher=teacher, train_data=(x, y), val_data=(x[:32], y[:32]),
        run_dir=tmp_path, epochs=1, batch_size=32,
        callbacks=[keras.callbacks.LambdaCallback(
            on_train_begin=lambda logs: runs.append(1))],
    )
    counts = allocate("tuned", student, 128, max_trials=2, **options)
    assert len(runs) == 2 and sum(counts.values()) == 128
    trials = sorted(p.name for p in (tmp_path / "allocation").glob("trial_*"))
    assert len(trials) == 2
    counts = allocate("tuned", student, 128, max_trials=3, **options)
    assert len(runs) == 3  # only the missing trial ran
    assert len(list((tmp_path / "allocation").glob("trial_*"))) == 3
    assert sum(counts.values()) == 128
    assert all(c <= 256 for c in counts.values())
    assert all_trainable(teacher)
    assert count_relus(student).kept == count_relus(student).total


def tuned_trials(run_dir, seed, global_seed):
    """The hyperparameters of each trial of a two-trial tuned search after
    ``keras.utils.set_random_seed(global_seed)``."""
    keras.utils.set_random_seed(global_seed)
    student = replace_relus(tiny_cnn())
    x, y = tiny_data(64)
    tune_allocation(student, 128, (x, y), (x[:32], y[:32]), run_dir,
                    max_trials=2, groups="layer", seed=seed, batch_size=32)
    return [json.loads(path.read_text())["hyperparameters"]["values"]
            for path in sorted(run_dir.glob("allocation/trial_*/trial.json"))]


def test_tuned_allocation_is_seeded_by_its_seed_also_0(tmp_path):
    first = tuned_trials(tmp_path / "a", seed=0, global_seed=0)
    assert len(first) == 2 and first[0] != first[1]
    assert tuned_trials(tmp_path / "b", seed=0, global_seed=1) == first
    assert tuned_trials(tmp_path / "c", seed=1, global_seed=0) != first


def test_tuner_seed_is_deterministic_and_never_0():
    seeds = [tuner_seed(s) for s in range(1000)]
    assert seeds == [s + 1 for s in range(1000)]
    for seed in (2**32 - 2, 2**32 - 1, 2**40, -1):
        assert 0 < tuner_seed(seed) < 2**32
    assert tuner_seed(2**32 - 1) != tuner_seed(2**32 - 2)


def test_allocation_names():
    assert ALLOCATIONS == ("free", "uniform", "sensitivity", "tuned")
    assert set(TUNERS) == {"random", "bayesian"}
    assert keras_autorep.relu_sensitivity is relu_sensitivity
    assert keras_autorep.allocate_by_sensitivity is allocate_by_sensitivity


# ------------------------------------------------------------------ sensitivity


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
