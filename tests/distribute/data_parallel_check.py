"""Train a tiny selector model a few steps on one device, then from the same
seed on two, and print both states as JSON (run by test_data_parallel.py in
a fresh process).

``python data_parallel_check.py`` with ``KERAS_BACKEND`` set; two CPU
devices are simulated: ``XLA_FLAGS=--xla_force_host_platform_device_count=2``
(set by the caller) under JAX, two logical CPU devices under TensorFlow.
``python data_parallel_check.py multihost`` with ``KERAS_BACKEND=jax`` and
the ``KERAS_DISTRIBUTION_*`` variables set is one of two processes that
train on their two CPU devices together; it prints its two-device state.
"""

import json
import os
import sys
import time

import tensorflow as tf

if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_autorep import BudgetTrainer, replace_relus  # noqa: E402
from keras_autorep.graph.sites import selectors  # noqa: E402
from keras_autorep.training.distribute import (  # noqa: E402
    data_parallel,
    in_scope,
    initialize_hosts,
)

STEPS, BATCH = 6, 32  # global batch


def replica_values(variable):
    """The variable's value on each device, as NumPy arrays."""
    value = variable.value
    if hasattr(value, "values"):  # a TensorFlow MirroredVariable
        return [np.asarray(v) for v in value.values]
    if hasattr(value, "addressable_shards"):  # a JAX array
        return [np.asarray(s.data) for s in value.addressable_shards]
    return [np.asarray(value)]


def replicas_agree(variables):
    """Whether every device holds the same value of every variable."""
    return all(all(np.array_equal(v[0], other) for other in v[1:])
               for v in map(replica_values, variables))


class StepLosses(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses, self.counts = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))
        self.counts.append(float(logs["relu_count"]))


def train(devices):
    """Losses, ReLU counts, selector state and step time on ``devices``."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * BATCH, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 10, STEPS * BATCH)
    with in_scope(data_parallel(devices)):
        keras.utils.set_random_seed(0)
        teacher = keras.Sequential([
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(8, 3, padding="same"),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10)])
        # refit every step: each step's coefficients follow the statistics
        student = replace_relus(teacher, refit_every=1)
        trainer = BudgetTrainer(student, 150, teacher=teacher,
                                budget_weight=100)
        trainer.compile(
            optimizer=keras.optimizers.Adam(0.05),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        steps = StepLosses()
        # a dataset of global batches: several processes shard it
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
        trainer.fit(data, epochs=1, verbose=0, callbacks=[steps])
        start = time.perf_counter()  # compiled: the step time
        trainer.fit(data, epochs=1, verbose=0)
        step_seconds = (time.perf_counter() - start) / STEPS
    state = []
    for site in selectors(student):
        p = site.polynomial
        state.append(dict(
            mask=np.asarray(site.mask.numpy()).tolist(),
            mean=np.asarray(p.moving_mean.numpy()).tolist(),
            std=np.asarray(p.moving_std.numpy()).tolist(),
            coefficients=keras.ops.convert_to_numpy(p.coefficients).tolist(),
            replicas_agree=replicas_agree(
                [site.mask, site.alpha, p.moving_mean, p.moving_std,
                 p.learned, p.fitted, p.steps]),
            replicas=len(replica_values(site.mask))))
    return dict(losses=steps.losses, relu_counts=steps.counts, state=state,
                step_seconds=step_seconds)


if __name__ == "__main__":
    if len(sys.argv) == 1:
        print(json.dumps({devices: train(devices) for devices in (1, 2)}))
    else:  # one of two JAX processes of one CPU device each
        initialize_hosts()
        print(json.dumps(train(2)))
