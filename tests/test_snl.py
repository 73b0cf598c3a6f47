"""SNL: the soft mask layer, shared mask helpers and the train_snl flow."""

import warnings

import keras
import numpy as np
import pytest

from keras_autorep import ReLUSelector, count_relus, harden, replace_relus
from keras_autorep.conversion import selectors
from keras_autorep.layers.soft_relu_mask import SoftReLUMask
from keras_autorep.methods import (
    DistillationTrainer,
    current_masks,
    freeze_masks,
    random_masks,
    set_masks,
    top_masks,
    train_snl,
)
from keras_autorep.methods.distill import fit_phase
from keras_autorep.methods.snl import (
    SNLSchedule,
    SNLSearchTrainer,
    soft_mask_model,
)
from tiny_models import (
    LOSS,
    all_trainable,
    tiny_cnn,
    tiny_data,
    trained_teacher,
)


@pytest.fixture(scope="module")
def data():
    return tiny_data()


@pytest.fixture(scope="module")
def teacher(data):
    return trained_teacher(data)


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("granularity", ["pixel", "channel"])
def test_soft_relu_mask_formula_constraint_and_roundtrip(granularity,
                                                      tmp_path):
    model = keras.Sequential(
        [keras.Input((2, 2, 3)), SoftReLUMask(granularity, name="soft")]
    )
    layer = model.get_layer("soft")
    assert layer.mask.shape == ((2, 2, 3) if granularity == "pixel" else (3,))
    assert layer.relus_per_indicator == (1 if granularity == "pixel" else 4)
    rng = np.random.default_rng(0)
    m = rng.random(layer.mask.shape).astype("float32")
    layer.mask.assign(m)
    x = rng.normal(size=(5, 2, 2, 3)).astype("float32")
    expected = m * np.maximum(x, 0) + (1 - m) * x
    np.testing.assert_allclose(model(x), expected, rtol=1e-6)
    assert np.array_equal(
        keras.ops.convert_to_numpy(layer.mask.constraint(m * 4 - 2)),
        np.clip(m * 4 - 2, 0, 1),
    )
    path = tmp_path / "soft.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_layer("soft").get_config() == layer.get_config()
    np.testing.assert_allclose(loaded(x), expected, rtol=1e-6)


def test_soft_mask_model_copies_weights_and_names():
    keras.utils.set_random_seed(0)
    teacher = tiny_cnn()
    student = replace_relus(teacher, fit="identity", degree=1)
    search = soft_mask_model(student)
    assert [l.name for l in search.layers] == [l.name for l in student.layers]
    soft = [l for l in search.layers if isinstance(l, SoftReLUMask)]
    assert [l.name for l in soft] == ["conv1_relu", "relu2"]
    x, _ = tiny_data(8)
    np.testing.assert_allclose(search(x), teacher(x), rtol=1e-5, atol=1e-6)


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


def test_snl_schedule_stops_at_budget_and_grows_lambda():
    search = soft_mask_model(replace_relus(tiny_cnn(), fit="identity",
                                           degree=1))
    trainer = SNLSearchTrainer(search, l1_weight=1.0)
    schedule = SNLSchedule(budget=100, growth=2.0)
    schedule.set_model(trainer)
    assert trainer.count() == 512
    schedule.on_epoch_end(0)  # first count: the lowest so far
    schedule.on_epoch_end(1)  # no new low: lambda doubles
    assert float(keras.ops.convert_to_numpy(trainer.l1_weight)) == 2.0
    trainer.masks[0].mask.assign(np.zeros((8, 8, 4)))
    schedule.on_epoch_end(2)  # a new low above the budget: unchanged
    assert float(keras.ops.convert_to_numpy(trainer.l1_weight)) == 2.0
    assert not getattr(trainer, "stop_training", False)
    trainer.masks[1].mask.assign(np.full((8, 8, 4), 0.005))  # < threshold
    schedule.on_epoch_end(3)
    assert trainer.stop_training and trainer.count() == 0


def test_train_snl_reaches_budget_and_hardens(data, teacher, tmp_path):
    x, y = data
    total = count_relus(teacher).total
    budget = 100
    phases, logs = [], []

    def callbacks(phase):
        phases.append(phase)
        return [keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, log: logs.append(log["relu_count"]))]

    keras.utils.set_random_seed(0)
    with warnings.catch_warnings():
        # the search itself reaches the budget: no warning
        warnings.filterwarnings("error", message="SNL search ended")
        student = train_snl(
            teacher, budget, (x, y), (x[:64], y[:64]), epochs=15,
            finetune_epochs=1, lr=5e-2, l1_weight=1e-2, l1_growth=1.5,
            batch_size=32, callbacks=callbacks, verbose=0,
        )
    assert phases == ["search", "finetune"]
    assert logs[-1] == budget and max(logs) <= total
    assert total == 512 and count_relus(student).kept == budget
    for site in selectors(student):
        assert isinstance(site, ReLUSelector)
        assert (site.fit, site.degree) == ("identity", 1)
        assert not site.alpha.trainable
    assert all_trainable(teacher)  # the teacher's flags are restored
    student.save(tmp_path / "student.keras")  # as the pipeline stores it
    reloaded = keras.saving.load_model(tmp_path / "student.keras")
    hardened = harden(reloaded, budget)
    assert count_relus(hardened).kept == budget
    np.testing.assert_allclose(
        hardened(x[:16]), student(x[:16], training=False), rtol=1e-4,
        atol=1e-5,
    )
    hardened.compile(loss=LOSS, metrics=["accuracy"])
    assert hardened.evaluate(x, y, verbose=0)[1] > 0.6  # chance: 1/3


def test_train_snl_with_per_site_counts_and_warning(data, teacher):
    counts = {"conv1_relu": 20, "relu2": 60}
    with pytest.warns(UserWarning, match="binarisation keeps the largest"):
        student = train_snl(
            teacher, 90, data, epochs=1, finetune_epochs=0, counts=counts,
            batch_size=64, verbose=0,
        )
    kept = {row.layer: row.kept for row in count_relus(student).rows}
    assert kept == counts
    with pytest.raises(ValueError, match="more than the selector budget"):
        train_snl(teacher, 50, data, counts=counts, epochs=0,
                  finetune_epochs=0)
