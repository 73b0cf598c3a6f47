"""Train one saved student ``STEPS`` ``BudgetTrainer`` steps on saved
batches, on one device and on two, and print both states as JSON (run by
test_backend_parity.py once per backend, each in a fresh process).

``python backend_parity_check.py FOLDER`` with ``KERAS_BACKEND`` set;
``FOLDER`` holds ``teacher.keras``, ``student.keras``, ``x.npy`` and
``y.npy``. Two CPU devices are simulated as in ``data_parallel_check.py``:
``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (set by the caller)
under JAX, two logical CPU devices under TensorFlow.
"""

import json
import os
import sys
from pathlib import Path

if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
    import tensorflow as tf

    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_autorep import BudgetTrainer  # noqa: E402
from keras_autorep.graph.sites import selectors  # noqa: E402
from keras_autorep.training.distribute import (  # noqa: E402
    data_parallel,
    in_scope,
)

BATCH, BUDGET, LAMBDA, LEARNING_RATE = 32, 500, 10.0, 0.02


def numpy_list(value):
    return keras.ops.convert_to_numpy(value).tolist()


def train(folder, devices):
    """Per-step losses and ReLU counts, and the selectors' final state."""
    x, y = np.load(folder / "x.npy"), np.load(folder / "y.npy")
    with in_scope(data_parallel(devices)):
        keras.utils.set_random_seed(0)
        teacher = keras.saving.load_model(folder / "teacher.keras")
        student = keras.saving.load_model(folder / "student.keras")
        trainer = BudgetTrainer(student, BUDGET, teacher=teacher,
                                budget_weight=LAMBDA)
        trainer.compile(
            optimizer=keras.optimizers.Adam(LEARNING_RATE),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        losses, counts = [], []
        for start in range(0, len(x), BATCH):
            trainer.reset_metrics()  # this step's loss, not a running mean
            logs = trainer.train_on_batch(x[start:start + BATCH],
                                          y[start:start + BATCH],
                                          return_dict=True)
            losses.append(float(logs["loss"]))
            counts.append(float(logs["relu_count"]))
    state = [dict(mask=numpy_list(site.mask),
                  coefficients=numpy_list(site.coefficients),
                  mean=numpy_list(site.polynomial.moving_mean),
                  std=numpy_list(site.polynomial.moving_std))
             for site in selectors(student)]
    return dict(losses=losses, relu_counts=counts, state=state)


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    print(json.dumps({devices: train(folder, devices) for devices in (1, 2)}))
