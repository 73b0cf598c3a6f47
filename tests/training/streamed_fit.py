"""Train a tiny model on a small streamed image tree through a recipe
run's fit loop (``Run.fit``: its pipelines, checkpoints and signals), for
the pre-emption tests.

    python streamed_fit.py TREE OUT [--every N] [--signal NAME EPOCH BATCH]

``--signal`` makes the process send itself ``SIGNAME`` once batch ``BATCH``
(counted from 1) of epoch ``EPOCH`` (from 0) is done. The final weights go
to ``OUT/weights.npz``; the exit status is the recipes'.
"""

import argparse
import os
import signal
import sys

import keras
import numpy as np

from keras_autorep.data import load_image_streams
from keras_autorep.recipes.cli import build_parser
from keras_autorep.recipes.run import Run, RunData
from keras_autorep.recipes.run_folder import RunFolder
from keras_autorep.recipes.settings import Settings
from keras_autorep.training.preemption import Preempted, stop_on_signals
from keras_autorep.training.schedules import cosine_sgd

EPOCHS, BATCH_SIZE, SIZE = 3, 4, 16


class SendSignal(keras.callbacks.Callback):
    """Sends the process ``signum`` after a given batch of an epoch."""

    def __init__(self, signum, epoch, batch):
        super().__init__()
        self.signum, self.at = signum, (epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        # Keras counts the batches of a resumed epoch from 0 again: the
        # optimizer's step tells the batch of the epoch.
        step = int(keras.ops.convert_to_numpy(
            self.model.optimizer.iterations))
        if (self.epoch, step - self.epoch * self.params["steps"]) == self.at:
            os.kill(os.getpid(), self.signum)


def main(tree, out, every, stop):
    settings = Settings.resolve("imagenet", vars(build_parser(
        "imagenet").parse_args([
            "--budget", "1x", "--batch-size", str(BATCH_SIZE), "--seed", "7",
            "--checkpoint-every", str(every)])))
    train, test, info = load_image_streams("tree", tree, SIZE,
                                           cache_dir=f"{out}/cache")
    run = Run(settings, RunData(train, test, info, 0.0),
              RunFolder(out, "run"))
    keras.utils.set_random_seed(7)
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(info.num_classes)])
    model.compile(optimizer=cosine_sgd(0.1, run.steps(EPOCHS)),
                  **run.compile_args())
    if stop:
        name, epoch, batch = stop
        sender = SendSignal(signal.Signals[f"SIG{name}"], int(epoch),
                            int(batch))
        callbacks = run.callbacks()
        run.callbacks = lambda: lambda stage: [sender, *callbacks(stage)]
    run.fit("teacher", model, EPOCHS)
    np.savez(f"{out}/weights.npz", *model.get_weights())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("tree")
    parser.add_argument("out")
    parser.add_argument("--every", type=int, default=0)
    parser.add_argument("--signal", nargs=3, default=None)
    args = parser.parse_args()
    with stop_on_signals():
        try:
            main(args.tree, args.out, args.every, args.signal)
        except Preempted as e:
            print(f"streamed_fit.py: {e.message()}", file=sys.stderr)
            sys.exit(e.exit_status)
