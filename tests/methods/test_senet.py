"""SENet (keras_autorep.methods.senet): sensitivity counts, mask
identification and fine-tuning in train_senet."""

import numpy as np
import pytest

from keras_autorep import count_relus, harden, replace_relus, selectors
from keras_autorep.allocation import allocate_by_sensitivity, relu_sensitivity
from keras_autorep.graph import current_masks, random_masks, site_sizes
from keras_autorep.methods import train_senet
from tiny_models import (
    LOSS,
    all_trainable,
    tiny_data,
    trained_teacher,
)


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
    # Held out, 3 classes: 100 % measured (the task is linear: this checks
    # a working student, not where its ReLUs are).
    assert hardened.evaluate(*tiny_data(seed=1), verbose=0)[1] >= 0.9


def test_train_senet_starts_from_random_masks_at_given_counts():
    data = tiny_data(64)
    teacher = trained_teacher(data, epochs=1)
    counts = {"conv1_relu": 20, "relu2": 60}
    student = train_senet(teacher, 100, data, counts=counts, epochs=0,
                          finetune_epochs=0, seed=3, verbose=0)
    expected = random_masks(replace_relus(teacher, fit="identity", degree=1),
                            counts, seed=3)
    masks = current_masks(student)
    assert all(np.array_equal(masks[n], expected[n]) for n in counts)
    assert {row.layer: row.kept for row in count_relus(student).rows} \
        == counts
    assert all(not s.alpha.trainable for s in selectors(student))
    with pytest.raises(ValueError, match="more than the selector budget"):
        train_senet(teacher, 79, data, counts=counts, epochs=0,
                    finetune_epochs=0)
