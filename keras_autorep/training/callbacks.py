"""Callbacks of long training runs: epoch timing (checkpoints and resuming:
``keras_autorep.training.checkpoints``)."""

import time

import keras


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` (wall time incl. validation) to the epoch logs,
    so that a ``CSVLogger`` file keeps stage times across resumes."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self._start
