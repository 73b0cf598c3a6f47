"""One process of two distributed keras-tuner searches, run one after the
other (by test_distributed_search.py): ``python tuner_check.py DIRECTORY
PORT PORT`` with keras-tuner's ``KERASTUNER_TUNER_ID`` and
``KERASTUNER_ORACLE_IP`` set; ``tune_allocation`` uses the chief's first
port, the CryptoNAS search (``make_tuner``) the second. Every trial a
process trains appends its tuner id to ``DIRECTORY/trained-<search>.txt``;
the chief prints its results as JSON.
"""

import json
import os
import sys
from pathlib import Path

import keras
import numpy as np

from keras_autorep import replace_relus
from keras_autorep.allocation.tuned import (
    AllocationHyperModel,
    tune_allocation,
)
from keras_autorep.search import CryptoNASHyperModel, make_tuner

TRIALS = {"allocation": 3, "cryptonas": 4}


class RecordTraining(keras.callbacks.Callback):
    """Appends the tuner id to a file when a trial starts training."""

    def __init__(self, path):
        super().__init__()
        self.path = str(path)

    def on_train_begin(self, logs=None):
        with open(self.path, "a") as f:
            f.write(os.environ["KERASTUNER_TUNER_ID"] + "\n")


def data(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 48)
    x = (0.5 * rng.random((48, 8, 8, 3))).astype("float32")
    x[np.arange(48), :, :, y] += 0.5
    return x, y


def allocation(directory, record):
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(4, 3, strides=2, padding="same",
                            activation="relu"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    x, y = data()
    student = replace_relus(teacher)
    counts = tune_allocation(
        student, 100, (x, y), (x, y), directory, teacher=teacher,
        max_trials=TRIALS["allocation"], batch_size=16, callbacks=[record])
    if counts is None:
        return None
    # the split every recorded trial stands for, to check the result by
    hypermodel = AllocationHyperModel(student, 100)
    by_trial = {}
    for path in Path(directory, "allocation").glob("trial_*/trial.json"):
        trial = json.loads(path.read_text())
        by_trial[trial["trial_id"]] = hypermodel.counts(
            trial["hyperparameters"]["values"])
    return dict(counts=counts, by_trial=by_trial)


def cryptonas(directory, record):
    # 2 width multipliers x skip; x2 is over the budget (rejected)
    hypermodel = CryptoNASHyperModel(300, (8, 8, 3), 3, depths=(1,),
                                     width_multipliers=(1.0, 2.0), stages=2)
    tuner = make_tuner(hypermodel, directory,
                       max_trials=TRIALS["cryptonas"])
    x, y = data()
    tuner.search(x, y, validation_data=(x, y), epochs=1, batch_size=16,
                 verbose=0, callbacks=[record])
    if os.environ["KERASTUNER_TUNER_ID"] != "chief":
        return None
    return tuner.get_best_hyperparameters(1)[0].values


def main(directory, *ports):
    results = {}
    for (search, run), port in zip(
            (("allocation", allocation), ("cryptonas", cryptonas)), ports):
        os.environ["KERASTUNER_ORACLE_PORT"] = port
        record = RecordTraining(Path(directory) / f"trained-{search}.txt")
        results[search] = run(directory, record)
    print(json.dumps(results, default=int))


if __name__ == "__main__":
    main(*sys.argv[1:])
