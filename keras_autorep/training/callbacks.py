"""Callbacks of long training runs: epoch timing and resume notices."""

import json
import time
from pathlib import Path

import keras


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` (wall time incl. validation) to the epoch logs,
    so that a ``CSVLogger`` file keeps stage times across resumes."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self._start


class ResumeNotice(keras.callbacks.Callback):
    """Says where a stage resumes once ``BackupAndRestore`` restored it.

    Args:
        stage: stage name, for the message.
        backup_dir: the ``BackupAndRestore`` folder.
        epochs: the stage's epochs.
    """

    def __init__(self, stage, backup_dir, epochs):
        super().__init__()
        self.stage = stage
        self.metadata = Path(backup_dir) / "training_metadata.json"
        self.epochs = epochs

    def on_train_begin(self, logs=None):
        if not self.metadata.is_file():
            return
        epoch = json.loads(self.metadata.read_text())["epoch"]
        optimizer = self.model.optimizer
        print(f"Resuming the {self.stage} stage after epoch {epoch}/"
              f"{self.epochs}: optimizer step {int(optimizer.iterations)}, "
              f"learning rate {float(optimizer.learning_rate):.3g}",
              flush=True)
