"""The methods on a task where the kept ReLUs decide the accuracy
(``tiny_models.spot_data``): no linear or quadratic feature separates its
classes, so a student is only as good as the places of its ReLUs."""

import keras
import pytest

from keras_autorep import count_relus, harden
from keras_autorep.methods import train_autorep, train_senet, train_snl
from tiny_models import LOSS, spot_cnn, spot_data

# 64 of the 256 ReLUs: two channels' worth of the spot's half.
BUDGET = 64
METHODS = {
    "autorep": (train_autorep, dict(epochs=20, finetune_epochs=2, lr=2e-2,
                                    budget_weight=50.0)),
    "snl": (train_snl, dict(epochs=20, finetune_epochs=2, lr=5e-2,
                            l1_weight=1e-2, l1_growth=1.5)),
}


def accuracy(model, data):
    model.compile(loss=LOSS, metrics=["accuracy"])
    return model.evaluate(*data, batch_size=256, verbose=0)[1]


@pytest.fixture(scope="module")
def spot():
    """The task's training and held-out data, and a teacher trained on
    it (96 % held out)."""
    data, held_out = spot_data(512, seed=0), spot_data(512, seed=1)
    keras.utils.set_random_seed(0)
    teacher = spot_cnn()
    teacher.compile(keras.optimizers.Adam(2e-2), LOSS)
    teacher.fit(*data, batch_size=32, epochs=20, verbose=0)
    return data, held_out, teacher


# Held out, measured with seeds 0 and 1: teachers 95-96 %, AutoReP 90-97 %,
# SNL 93-95 %. The same 64 ReLUs where AutoReP's search ranked them worst:
# 49-56 %; at random places (3 draws each): 57-69 %; no ReLU (budget 0):
# 50-52 %. The bound, 80 %, lies between. (SENet's students, with these
# options, found the spot no better than random places: 53-64 %.)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_students_keep_the_relus_the_task_needs(spot, method):
    data, held_out, teacher = spot
    assert accuracy(teacher, held_out) >= 0.90
    train, options = METHODS[method]
    keras.utils.set_random_seed(0)
    student = train(teacher, BUDGET, data, batch_size=32, verbose=0,
                    **options)
    hardened = harden(student, BUDGET)
    assert count_relus(hardened).kept == BUDGET
    assert accuracy(hardened, held_out) >= 0.80
