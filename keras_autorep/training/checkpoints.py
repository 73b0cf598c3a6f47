"""Checkpoints of a fit at its steps, and the fit resumed at that step.

``StepCheckpoint(folder, position)`` saves the training state: the model's
variables with the optimizer's (its step counter, so the learning-rate
schedule goes on where it was) in one ``.weights.h5`` file, and in
``METADATA`` the epoch, the batches of it done and the states of the
random seed generators (dropout's, which ``save_weights`` leaves out). It
saves at every epoch end, every ``every`` steps, and when a signal asks
the process to stop (``keras_autorep.training.preemption``). A fit given a callback on the same
folder restores that state and starts at that batch: the callback sets the
``EpochPosition`` of the fit's training pipeline, whose epochs derive from
``(seed, epoch)`` (``keras_autorep.data.epochs``), so the resumed fit sees
the batches an uninterrupted one would. The metrics of a resumed epoch
cover the batches after the resume.

A resumed epoch is shorter than the others: its pipeline runs out, which
Keras takes as the end of the epoch (its warning about it is silenced).
Under TensorFlow the call that finds the pipeline exhausted trains nothing
but moves the optimizer's step and the seed generators on by one; they are
set back at the end of the epoch, so the learning-rate schedule and the
dropout draws go on as in an uninterrupted fit.

Each save writes a new weights file, then points ``METADATA`` at it
(atomically), then removes every other file of the folder: a kill at any
moment leaves the last complete checkpoint.
"""

import json
import warnings
from pathlib import Path

import keras
from keras import ops

from keras_autorep.adapters.keras_fit import RAN_OUT, start_fit_at
from keras_autorep.data.cache import write_text_atomic
from keras_autorep.training import preemption

METADATA = "training_metadata.json"
# The weights file of keras.callbacks.BackupAndRestore, which backed up the
# run folders of earlier versions at epoch ends.
BACKUP_AND_RESTORE_WEIGHTS = "latest.weights.h5"
# The name of a keras.random.SeedGenerator's state variable.
SEED_STATE = "seed_generator_state"


class StepCheckpoint(keras.callbacks.Callback):
    """Saves a fit's state at its steps and resumes it (module doc).

    Args:
        folder: the checkpoint folder (one per fit).
        position: the ``EpochPosition`` of the fit's training pipeline.
        every: steps between saves within an epoch (0: at epoch ends and
            on a stop signal only).
        stage: what the fit trains, for messages.
    """

    def __init__(self, folder, position, every=0, stage="training"):
        super().__init__()
        self.folder = Path(folder)
        self.position = position
        self.every = int(every)
        self.stage = stage
        self.start = None
        self.epoch = self.batch = self.skip = self.saved = 0
        self._quiet = self._counted = None

    def restore(self):
        """Load the saved state into the model; ``(epoch, batch)`` it
        reached, or ``None`` without a checkpoint."""
        try:
            record = json.loads((self.folder / METADATA).read_text())
        except FileNotFoundError:
            return None
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(
            self.folder / record.get("weights", BACKUP_AND_RESTORE_WEIGHTS))
        for state, value in zip(self.seed_states(), record.get("seeds", ())):
            state.assign(value)
        return record["epoch"], record["batch"]

    def seed_states(self):
        """The state variables of the model's random seed generators."""
        return [v for v in self.model.variables if v.name == SEED_STATE]

    def counters(self):
        """The optimizer's step and the seed generators' states, with
        their values now."""
        variables = [self.model.optimizer.iterations, *self.seed_states()]
        return [(v, ops.convert_to_numpy(v)) for v in variables]

    def where(self, epoch, batch):
        """``"epoch E/EPOCHS, batch B/STEPS"`` in words."""
        return (f"the {self.stage} stage at epoch {epoch + 1}/"
                f"{self.params['epochs']}, batch {batch}/"
                f"{self.params['steps']}")

    def save(self, epoch, batch):
        """Save the state reached: ``batch`` batches of ``epoch`` done."""
        self.folder.mkdir(parents=True, exist_ok=True)
        weights = f"epoch{epoch}-batch{batch}.weights.h5"
        self.model.save_weights(self.folder / f"tmp-{weights}")
        (self.folder / f"tmp-{weights}").replace(self.folder / weights)
        seeds = [ops.convert_to_numpy(v).tolist() for v in self.seed_states()]
        write_text_atomic(self.folder / METADATA, json.dumps(
            {"epoch": epoch, "batch": batch, "weights": weights,
             "seeds": seeds}))
        for path in self.folder.iterdir():
            if path.name not in (weights, METADATA):
                path.unlink()
        self.saved = batch

    def on_train_begin(self, logs=None):
        preemption.defer()
        self.start = self.restore()
        if self.start is None:
            return
        epoch, batch = self.start
        start_fit_at(self.model, epoch)
        optimizer = self.model.optimizer
        done = (f"after epoch {epoch}/{self.params['epochs']}" if batch == 0
                else f"at batch {batch}/{self.params['steps']} of epoch "
                     f"{epoch + 1}/{self.params['epochs']}")
        step = ops.convert_to_numpy(optimizer.iterations)
        rate = ops.convert_to_numpy(optimizer.learning_rate)
        print(f"Resuming the {self.stage} stage {done}: optimizer step "
              f"{int(step)}, learning rate {float(rate):.3g}", flush=True)

    def on_epoch_begin(self, epoch, logs=None):
        resumed = self.start is not None and epoch == self.start[0]
        self.skip = self.start[1] if resumed else 0
        self.position.begin(epoch, self.skip)
        self.epoch, self.batch, self.saved = epoch, self.skip, self.skip
        if self.skip:
            self._quiet = warnings.catch_warnings()
            self._quiet.__enter__()
            warnings.filterwarnings("ignore", RAN_OUT)
            self._counted = self.counters()

    def on_train_batch_end(self, batch, logs=None):
        self.batch = self.skip + batch + 1
        if self._quiet is not None:
            self._counted = self.counters()
        if self.every and self.batch - self.saved >= self.every:
            self.save(self.epoch, self.batch)
        self._stop_if_asked()

    def on_test_batch_end(self, batch, logs=None):
        self._stop_if_asked()  # validation at an epoch end

    def on_epoch_end(self, epoch, logs=None):
        if self._quiet is not None:  # a resumed epoch
            self._quiet.__exit__(None, None, None)
            for variable, value in self._counted:
                variable.assign(value)
            self._quiet = self._counted = None
        self.epoch, self.batch = epoch + 1, 0
        self.save(self.epoch, 0)
        self._stop_if_asked()

    def on_train_end(self, logs=None):
        start_fit_at(self.model, None)
        preemption.stop_deferring(self.where(self.epoch, self.batch))

    def _stop_if_asked(self):
        if preemption.requested() is None:
            return
        if self.saved != self.batch:
            self.save(self.epoch, self.batch)
        preemption.stop_deferring(self.where(self.epoch, self.batch))
