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
    ImageStream,
    load_dataset,
    load_image_streams,
    make_datasets,
    split_validation,
)
from keras_autorep.data.decoding import UnreadableImagesError
from keras_autorep.data.epochs import EpochPosition
from keras_autorep.data.sources import sample_positions
from keras_autorep.data.streams import IMAGENET
from keras_autorep.methods import Plan
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
    """The loaded data of a run: its splits, uint8 ``(x, y)`` arrays or
    ``ImageStream``s (``--image-size``), and their info."""

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
        if s.image_size:
            train, test, info = load_image_streams(
                IMAGENET, data_dir=s.data_dir, image_size=s.image_size,
                subset=s.subset, seed=s.seed, cache_dir=s.cache_dir,
                strict_images=s.strict_images)
        else:
            train, test, info = load_dataset(
                s.dataset, data_dir=s.data_dir, cache_dir=s.cache_dir,
                subset=s.subset, seed=s.seed)
    except UnreadableImagesError as e:
        raise UsageError(f"{one_line(e)} (--strict-images; without it they "
                         "are skipped and listed in report.json)") from None
    except (DataUnavailableError, OSError, ValueError) as e:
        raise UsageError(one_line(e)) from None
    if info.unreadable:
        print(f"Skipping {len(info.unreadable)} image file(s) of "
              f"{s.data_dir} that do not decode (listed in report.json; "
              "--strict-images stops instead):", flush=True)
        for file, reason in info.unreadable:
            print(f"  {file}: {reason}", flush=True)
    streamed = " (streamed from files)" if s.image_size else ""
    print(f"Data: {s.dataset}, {split_size(train):,} train / "
          f"{split_size(test):,} test images of {info.image_shape}"
          f"{streamed}, {info.num_classes} classes", flush=True)
    return RunData(train, test, info, time.perf_counter() - start)


def split_size(split):
    """Images in a split (``(x, y)`` arrays or an ``ImageStream``)."""
    return len(split) if isinstance(split, ImageStream) else len(split[1])


def split_labels(split):
    """int32 labels of a split, in the order of its test pipeline."""
    return split.labels if isinstance(split, ImageStream) else split[1]


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
        settings: the resolved ``Settings``.
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
        # Where the training pipelines' epochs start; the stages'
        # checkpoints set it when they resume.
        self.position = EpochPosition()

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
        or over the given ones (``holdout``)."""
        s = self.settings
        keras.utils.set_random_seed(s.seed)
        train = self.train if train is None else train
        test = self.test if test is None else test
        if isinstance(train, ImageStream):
            return (train.dataset(s.batch_size, training=True, seed=s.seed,
                                  position=self.position),
                    test.dataset(s.batch_size))
        return make_datasets(train, test, self.info, s.batch_size,
                             seed=s.seed, position=self.position)

    def holdout(self, fraction):
        """``(fit, validation)``: the training split with a seeded random
        ``fraction`` held out."""
        if isinstance(self.train, ImageStream):
            return self.train.holdout(fraction, self.settings.seed)
        return split_validation(self.train, fraction, self.settings.seed)

    def sample(self, count, shuffled=False):
        """``(images, labels)``: ``count`` training images as float32 in
        [0, 1] (streams: center-cropped), the first ones or a seeded random
        sample (``ImageStream.sample``)."""
        seed = self.settings.seed if shuffled else None
        if isinstance(self.train, ImageStream):
            return self.train.sample(count, seed)
        x, y = self.train
        positions = sample_positions(len(y), count, seed)
        return x[positions].astype("float32") / 255.0, y[positions]

    def test_images(self, count):
        """The first ``count`` test images as raw pixels (float32, 0 to
        255), as a PI runtime takes them."""
        if isinstance(self.test, ImageStream):
            return self.test.sample(count)[0] * 255.0
        return self.test[0][:count].astype("float32")

    def steps(self, epochs, images=None):
        """Optimizer steps of ``epochs`` over the training split (or over
        ``images`` examples)."""
        images = split_size(self.train) if images is None else images
        return epochs * math.ceil(images / self.settings.batch_size)

    def plan(self):
        """The method's ``Plan``: epochs, learning rate, steps per epoch
        and options, from the settings."""
        s = self.settings
        return Plan(
            epochs=s.epochs, finetune_epochs=s.finetune_epochs or 0,
            lr=s.lr, steps_per_epoch=self.steps(1),
            budget_weight=s.budget_weight,
            activations=s.activations or ("relu",),
            selector_options=dict(quadratic_decay=s.quadratic_decay or 0.0,
                                  max_quadratic=s.max_quadratic),
            replacement=s.replacement, seed=s.seed)

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

    def callbacks(self):
        """``phase -> callbacks`` for methods with several phases, each with
        its own stage folder and checkpoints of the training pipeline's
        position."""
        return lambda phase: self.folder.callbacks(
            phase, self.position, self.settings.checkpoint_every)

    def fit(self, stage, model, epochs):
        """``model.fit`` with progress and the stage's callbacks; returns
        the stage's history."""
        callbacks = self.callbacks()(stage)
        train_ds, test_ds = self.datasets()
        model.fit(train_ds, epochs=epochs, validation_data=test_ds,
                  callbacks=callbacks, shuffle=False,  # the pipeline does
                  verbose=self.verbose())
        return self.folder.log(stage)

    def evaluate(self, model):
        """Test accuracy of a logits model (``reporting.evaluate``)."""
        return evaluate(model, self.datasets()[1], split_labels(self.test),
                        self.top5)
