"""SNL (keras_autorep.methods.snl): the soft-mask search model, its
schedule and the train_snl flow."""

import warnings

import keras
import numpy as np
import pytest

from keras_autorep import (
    ReLUSelector,
    SoftReLUMask,
    count_relus,
    harden,
    replace_relus,
    selectors,
)
from keras_autorep.methods import train_snl
from keras_autorep.methods.snl import SNLSchedule, soft_mask_model
from keras_autorep.training import DistillationTrainer, MaskL1
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


def test_soft_mask_model_copies_weights_and_names():
    keras.utils.set_random_seed(0)
    teacher = tiny_cnn()
    student = replace_relus(teacher, fit="identity", degree=1)
    search = soft_mask_model(student)
    assert [l.name for l in search.layers] == [l.name for l in student.layers]
    soft = [l for l in search.layers if isinstance(l, SoftReLUMask)]
    assert [l.name for l in soft] == ["conv1_relu", "relu2"]
    assert all(l.threshold == 1e-2 for l in soft)
    x, _ = tiny_data(8)
    np.testing.assert_allclose(search(x), teacher(x), rtol=1e-5, atol=1e-6)
    for layer in student.layers:  # every other layer's weights copied
        if not isinstance(layer, ReLUSelector):
            for a, b in zip(layer.get_weights(),
                            search.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
    channel = soft_mask_model(
        replace_relus(teacher, fit="identity", degree=1,
                      granularity="channel"), threshold=0.3)
    soft = [l for l in channel.layers if isinstance(l, SoftReLUMask)]
    assert [(l.granularity, l.threshold) for l in soft] == [
        ("channel", 0.3), ("channel", 0.3)]


def test_snl_schedule_stops_at_budget_and_grows_lambda():
    search = soft_mask_model(replace_relus(tiny_cnn(), fit="identity",
                                           degree=1))
    l1 = MaskL1(1.0)
    trainer = DistillationTrainer(search, terms=[l1])
    assert trainer.terms == [l1]  # no teacher: no distillation term
    assert [m.name for m in l1.masks] == ["conv1_relu", "relu2"]
    schedule = SNLSchedule(budget=100, l1=l1, growth=2.0)
    schedule.set_model(trainer)
    assert trainer.count() == 512
    assert trainer.relu_counter.fixed == 0  # every ReLU is a soft mask
    schedule.on_epoch_end(0)  # first count: the lowest so far
    schedule.on_epoch_end(1)  # no new low: lambda doubles
    assert float(keras.ops.convert_to_numpy(l1.variable)) == 2.0
    l1.masks[0].mask.assign(np.zeros((8, 8, 4)))
    schedule.on_epoch_end(2)  # a new low above the budget: unchanged
    assert float(keras.ops.convert_to_numpy(l1.variable)) == 2.0
    assert not getattr(trainer, "stop_training", False)
    l1.masks[1].mask.assign(np.full((8, 8, 4), 0.005))  # < threshold
    schedule.on_epoch_end(3)
    assert trainer.stop_training and trainer.count() == 0


def test_mask_l1_term_is_lambda_times_the_masks_l1_norm():
    search = soft_mask_model(replace_relus(tiny_cnn(), fit="identity",
                                           degree=1))
    l1 = MaskL1(0.5)
    DistillationTrainer(search, terms=[l1])
    l1.masks[0].mask.assign(np.full((8, 8, 4), 0.25))
    assert float(keras.ops.convert_to_numpy(l1(None))) == pytest.approx(
        0.5 * (256 * 0.25 + 256 * 1.0))
    with pytest.raises(ValueError, match="SoftReLUMask"):
        DistillationTrainer(replace_relus(tiny_cnn()), terms=[MaskL1()])


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
    # Held out, 3 classes: 100 % measured (the task is linear;
    # test_selection.py checks where the ReLUs go).
    assert hardened.evaluate(*tiny_data(seed=1), verbose=0)[1] >= 0.9


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
