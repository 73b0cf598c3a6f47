"""keras_autorep.graph.masks: setting, choosing and freezing selector masks
(shared by SNL, SENet and budget allocation)."""

import keras
import numpy as np
import pytest

from keras_autorep import ReLUSelector
from keras_autorep.graph import (
    check_counts,
    count_relus,
    current_masks,
    freeze_masks,
    random_masks,
    replace_relus,
    selector_budget,
    selectors,
    set_masks,
    site_sizes,
    top_masks,
)
from keras_autorep.training import DistillationTrainer
from keras_autorep.training.fit import fit_phase
from tiny_models import tiny_cnn, tiny_data


@pytest.fixture(scope="module")
def data():
    return tiny_data()


@pytest.mark.backend_agnostic
def test_top_and_random_masks():
    student = replace_relus(tiny_cnn(), fit="identity", degree=1)
    rng = np.random.default_rng(1)
    scores = {s.name: rng.random(s.mask.shape) for s in selectors(student)}
    both = np.concatenate([scores[n].ravel() for n in sorted(scores)])
    masks = top_masks(student, scores, budget=100)
    kept = np.concatenate([masks[n].ravel() for n in sorted(masks)])
    assert kept.sum() == 100
    assert both[kept].min() > both[~kept].max()
    counts = {"conv1_relu": 7, "relu2": 250}
    for masks in (
        top_masks(student, scores, counts=counts),
        random_masks(student, counts, seed=3),
    ):
        assert {n: int(m.sum()) for n, m in masks.items()} == counts
    per_site = top_masks(student, scores, counts=counts)["conv1_relu"]
    assert scores["conv1_relu"][per_site].min() > np.sort(
        scores["conv1_relu"].ravel())[-8]
    with pytest.raises(ValueError, match="exactly one"):
        top_masks(student, scores)
    with pytest.raises(ValueError, match="outside"):
        random_masks(student, {"conv1_relu": 257, "relu2": 0})


def test_channel_masks_count_whole_channels():
    student = replace_relus(
        tiny_cnn(), fit="identity", degree=1, granularity="channel"
    )
    scores = {s.name: np.arange(4.0) for s in selectors(student)}
    masks = top_masks(student, scores, budget=200)  # 64 ReLUs per channel
    set_masks(student, masks)
    assert count_relus(student).kept == 192
    masks = top_masks(student, scores, counts={"conv1_relu": 130, "relu2": 64})
    assert [int(m.sum()) for m in masks.values()] == [2, 1]


@pytest.mark.backend_agnostic
def test_frozen_masks_survive_training(data):
    keras.utils.set_random_seed(0)
    student = replace_relus(tiny_cnn(), fit="identity", degree=1)
    set_masks(student, random_masks(student, {"conv1_relu": 30,
                                              "relu2": 90}, seed=0))
    freeze_masks(student)
    before = current_masks(student)
    for site in selectors(student):
        alpha = keras.ops.convert_to_numpy(site.alpha)
        assert set(np.unique(alpha)) == {-1.0, 1.0}
        assert np.array_equal(alpha > 0, before[site.name])
        assert not site.alpha.trainable
        assert all(v is not site.alpha for v in student.trainable_variables)
    fit_phase(DistillationTrainer(student), data, epochs=1, lr=0.5,
              phase="finetune", batch_size=64, verbose=0)
    after = current_masks(student)
    assert all(np.array_equal(before[n], after[n]) for n in before)
    assert count_relus(student).kept == 120


def test_unfrozen_set_masks_keeps_alpha_magnitude_and_hysteresis():
    student = replace_relus(tiny_cnn())
    site = selectors(student)[0]
    magnitude = np.abs(keras.ops.convert_to_numpy(site.alpha))
    masks = random_masks(student, {"conv1_relu": 10, "relu2": 20}, seed=0)
    set_masks(student, masks)
    alpha = keras.ops.convert_to_numpy(site.alpha)
    np.testing.assert_allclose(np.abs(alpha), magnitude)
    assert site.alpha.trainable
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(site.hysteresis_mask()) > 0.5,
        masks[site.name],
    )


@pytest.mark.backend_agnostic
def test_site_sizes_counts_and_the_selector_budget():
    student = replace_relus(tiny_cnn())
    assert site_sizes(student) == {"conv1_relu": 256, "relu2": 256}
    check_counts(student, {"conv1_relu": 256, "relu2": 0}, budget=256)
    with pytest.raises(ValueError, match="name every selector"):
        check_counts(student, {"conv1_relu": 1})
    with pytest.raises(ValueError, match="outside"):
        check_counts(student, {"conv1_relu": -1, "relu2": 0})
    with pytest.raises(ValueError, match="more than the selector budget"):
        check_counts(student, {"conv1_relu": 200, "relu2": 100}, budget=299)
    assert selector_budget(student, 100) == 100
    assert selector_budget(student, "50%") == 256
    # ReLUs outside selectors are always computed: they come off first.
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.ReLU(name="plain")(inputs)  # 192 ReLUs, no selector
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv")(h)
    partly = keras.Model(inputs, ReLUSelector(name="site")(h))
    assert site_sizes(partly) == {"site": 256}
    assert selector_budget(partly, 200) == 8
    with pytest.raises(ValueError,
                       match="ReLUs kept outside selectors, more than the "
                             "budget"):
        selector_budget(partly, 191)
    with pytest.raises(ValueError, match="replace_relus"):
        site_sizes(tiny_cnn())
