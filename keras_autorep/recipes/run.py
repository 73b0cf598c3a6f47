"""What every recipe stage works with: settings, data, run folder, fit loop.

``load_run_data(settings)`` loads and reports the data (``UsageError`` on
a missing or unreadable source); ``Run`` bundles it with the settings and
the ``RunFolder`` and provides the datasets, the fit loop (per-stage logs,
TensorBoard, backup and resume) and evaluation.
"""

import dataclasses
import math
import sys
import time
from pathlib import Path

import keras

from keras_autorep.data import (
    DataUnavailableError,
    DatasetInfo,
    load_dataset,
    make_datasets,
)
from keras_autorep.recipes.reporting import evaluate, one_line
from keras_autorep.recipes.settings import UsageError
from keras_autorep.training.distribute import (
    available_devices,
    data_parallel,
    in_scope,
    single_device_copy,
)


@dataclasses.dataclass(frozen=True)
class RunData:
    """The loaded data of a run: uint8 ``(x, y)`` splits and their info."""

    train: tuple
    test: tuple
    info: DatasetInfo
    seconds: float


def load_run_data(settings):
    """Load the settings' dataset; ``UsageError`` when it is unavailable,
    damaged or incomplete."""
    s = settings
    start = time.perf_counter()
    try:
        train, test, info = load_dataset(
            s.dataset, data_dir=s.data_dir, cache_dir=s.cache_dir,
            subset=s.subset, seed=s.seed)
    except (DataUnavailableError, OSError, ValueError) as e:
        raise UsageError(one_line(e)) from None
    print(f"Data: {s.dataset}, {len(train[1]):,} train / "
          f"{len(test[1]):,} test images of {info.image_shape}, "
          f"{info.num_classes} classes", flush=True)
    return RunData(train, test, info, time.perf_counter() - start)


def distribution(settings):
    """The data-parallel distribution of ``--devices`` (``None`` for one
    device), announced."""
    if settings.devices == 1:
        return None
    devices = available_devices()[:settings.devices]
    print(f"Devices: data-parallel on {len(devices)} ({', '.join(devices)}),"
          f" global batch {settings.batch_size}", flush=True)
    return data_parallel(settings.devices)


class Run:
    """One recipe run's shared state and training plumbing.

    Args:
        settings: resolved settings (``Settings`` or ``CryptoNASSettings``).
        data: the ``RunData``.
        folder: the ``RunFolder``.
        distribution: ``distribution(settings)``; models are built and
            trained in ``scope()``, hardened and exported out of it.
    """

    def __init__(self, settings, data, folder, distribution=None):
        self.settings = settings
        self.distribution = distribution
        self.train, self.test, self.info = data.train, data.test, data.info
        self.folder = folder
        self.out = Path(settings.out)
        self.times = {"data": data.seconds}
        self.top5 = self.info.num_classes > 10

    def scope(self):
        """The scope to build and train models in (``--devices``)."""
        return in_scope(self.distribution)

    def gathered(self, model):
        """A trained model on one device, ready to harden and export."""
        if self.distribution is None:
            return model
        return single_device_copy(model)

    def datasets(self, train=None, test=None):
        """``(train_ds, test_ds)`` pipelines (seeded) over the run's splits,
        or over the given ``(x, y)`` arrays."""
        s = self.settings
        keras.utils.set_random_seed(s.seed)
        return make_datasets(train or self.train, test or self.test,
                             self.info, s.batch_size, seed=s.seed)

    def steps(self, epochs, images=None):
        """Optimizer steps of ``epochs`` over the training split (or over
        ``images`` examples)."""
        images = len(self.train[1]) if images is None else images
        return epochs * math.ceil(images / self.settings.batch_size)

    def metrics(self):
        """Compiled metrics: top-1, and top-5 with more than 10 classes."""
        metrics = ["accuracy"]
        if self.top5:
            metrics.append("sparse_top_k_categorical_accuracy")
        return metrics

    def compile_args(self):
        """``compile`` loss and metrics of logits models."""
        return dict(
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=self.metrics())

    @staticmethod
    def verbose():
        """Progress bars on a terminal, one line per epoch in a log file."""
        return 1 if sys.stdout.isatty() else 2

    def callbacks(self, epochs):
        """``phase -> callbacks`` for methods with several phases, each with
        its own stage folder; ``epochs`` maps phase to its epochs."""
        return lambda phase: self.folder.callbacks(phase, epochs[phase])

    def fit(self, stage, model, epochs):
        """``model.fit`` with progress and the stage's callbacks; returns
        the stage's history."""
        callbacks = self.folder.callbacks(stage, epochs)
        train_ds, test_ds = self.datasets()
        model.fit(train_ds, epochs=epochs, validation_data=test_ds,
                  callbacks=callbacks, shuffle=False,  # the pipeline does
                  verbose=self.verbose())
        return self.folder.log(stage)

    def evaluate(self, model):
        """Test accuracy of a logits model (``reporting.evaluate``)."""
        return evaluate(model, self.datasets()[1], self.test[1], self.top5)
