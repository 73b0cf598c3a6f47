"""Budget allocation: the pure split, uniform/sensitivity/tuned, seeding."""

import keras
import numpy as np
import pytest

from keras_autorep import BudgetTrainer, count_relus, replace_relus
from keras_autorep.allocation import (
    AllocationHyperModel,
    allocate,
    apply_allocation,
    site_groups,
)
from keras_autorep.budget_split import split_budget, uniform_split
from keras_autorep.conversion import selectors
from keras_autorep.methods import current_masks, site_sizes
from keras_autorep.models import resnet_small
from tiny_models import all_trainable, tiny_cnn, tiny_data


def random_case(rng):
    n = int(rng.integers(1, 9))
    names = [f"layer{i}" for i in range(n)]
    sizes = dict(zip(names, rng.integers(0, 10_000, n).tolist()))
    weights = dict(zip(names, (rng.random(n) * (rng.random(n) > 0.2))))
    budget = int(rng.integers(0, sum(sizes.values()) + 1))
    return sizes, weights, budget


@pytest.mark.backend_agnostic
def test_split_budget_is_exact_capped_and_proportional():
    rng = np.random.default_rng(0)
    for case in range(500):
        sizes, weights, budget = random_case(rng)
        counts = split_budget(sizes, weights, budget)
        assert list(counts) == list(sizes)
        assert sum(counts.values()) == budget, case
        assert all(0 <= counts[k] <= sizes[k] for k in sizes), case
        live = [k for k in sizes if sizes[k] and weights[k] > 0]
        if budget <= sum(sizes[k] for k in live):
            assert all(counts[k] == 0 for k in sizes if k not in live), case
        # fraction = min(1, c * w): proportional to the weight until full
        full = [k for k in live if counts[k] == sizes[k]]
        open_ = [k for k in live if k not in full and sizes[k] > 50]
        for a in open_:
            for b in open_:
                target = weights[a] / weights[b] * counts[b] / sizes[b]
                assert abs(counts[a] / sizes[a] - target) <= (
                    1 / sizes[a] + weights[a] / weights[b] / sizes[b]
                ), case
        uniform = uniform_split(sizes, budget)
        assert sum(uniform.values()) == budget
        fraction = budget / max(1, sum(sizes.values()))
        assert all(abs(uniform[k] - fraction * sizes[k]) < 1 for k in sizes)


@pytest.mark.backend_agnostic
def test_split_budget_rejects_bad_input():
    with pytest.raises(ValueError, match="budget"):
        split_budget({"a": 3}, {"a": 1.0}, 4)
    with pytest.raises(ValueError, match="weight"):
        split_budget({"a": 3}, {"a": -1.0}, 1)
    with pytest.raises(ValueError, match="same layers"):
        split_budget({"a": 3}, {"b": 1.0}, 1)
    assert split_budget({"a": 10, "b": 10}, {"a": 1.0, "b": 0.0}, 15) == {
        "a": 10, "b": 5}


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
