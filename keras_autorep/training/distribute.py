"""Data-parallel training on the engines' own distribution APIs.

``data_parallel(n)`` gives the distribution in whose scope (``in_scope``)
models are built and trained on ``n`` devices:
``keras.distribution.DataParallel`` under JAX (one global program, the
batch sharded across devices, every variable replicated) and
``tf.distribute.MirroredStrategy`` under TensorFlow (one replica per
device, gradients all-reduced); with one device it is ``None`` and changes
nothing. The batch size stays the global one. The selector state stays
replicated: masks follow the replicated indicators, DaPa statistics span
the global batch, and the kept ReLU count and the budget term count once
per step (``keras_autorep.adapters.replicas``). ``single_device_copy``
takes a trained model out of the distribution for hardening and export.
What differs between the engines lives in ``keras_autorep.backends``.

Several hosts (JAX): ``initialize_hosts()`` (``keras.distribution
.initialize()``) first, on every host, with
``KERAS_DISTRIBUTION_JOB_ADDRESSES`` (the coordinator's ``host:port``),
``KERAS_DISTRIBUTION_NUM_PROCESSES`` and ``KERAS_DISTRIBUTION_PROCESS_ID``;
the devices are then the global ones, and the training data must be a
``tf.data`` pipeline of global batches of known size (Keras shards it per
process).
"""

import contextlib
import os

import keras

from keras_autorep.backends import current
from keras_autorep.graph import copy_weights

MULTI_HOST_VARIABLE = "KERAS_DISTRIBUTION_NUM_PROCESSES"


def initialize_hosts():
    """``keras.distribution.initialize()`` when the multi-host environment
    variables are set (JAX only); returns whether it ran."""
    if not os.environ.get(MULTI_HOST_VARIABLE):
        return False
    if not current().multi_host:
        raise ValueError(
            f"{MULTI_HOST_VARIABLE} is set: several hosts need "
            "KERAS_BACKEND=jax (keras.distribution.initialize)")
    keras.distribution.initialize()
    return True


def available_devices():
    """``keras.distribution.list_devices()``: the accelerators, else the
    CPUs (several only when simulated)."""
    return keras.distribution.list_devices()


def default_device_count():
    """All the accelerators, else one CPU."""
    devices = available_devices()
    return 1 if devices[0].startswith("cpu") else len(devices)


def check_device_count(count):
    """``count`` (``None``: the default) if that many devices exist, else a
    one-line ``ValueError``."""
    if count is None:
        return default_device_count()
    devices = available_devices()
    if not 1 <= count <= len(devices):
        raise ValueError(
            f"{count} devices asked for, {len(devices)} here "
            f"({', '.join(devices)})")
    return count


def data_parallel(count):
    """The engine's data-parallel distribution over the first ``count``
    devices (``keras.distribution.DataParallel`` under JAX,
    ``tf.distribute.MirroredStrategy`` under TensorFlow), or ``None`` for
    one device. Build and train models inside ``in_scope(distribution)``."""
    if count == 1:
        return None
    return current().data_parallel(available_devices()[:count])


def in_scope(distribution):
    """The distribution's scope; nothing for ``None`` (one device)."""
    if distribution is None:
        return contextlib.nullcontext()
    return distribution.scope()


def single_device_copy(model):
    """``model`` rebuilt outside any distribution with the same weights
    (export and hardening need plain variables)."""
    copy = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(model))
    copy_weights(model, copy)
    return copy
