"""Input pipelines over the uint8 arrays of `load_dataset`.

Design: the pipelines yield **float32 images scaled to [0, 1]** and int32
labels; they do *not* subtract the mean or divide by the std. Per-channel
normalisation belongs to the model: put `normalization_layer(info)` right
after the model input, so that training, evaluation and the exported model
(which takes raw pixels and normalises inside its graph) share one
definition.

Training augmentation (`augment=True`): zero-pad `pad` pixels on each side,
random crop back to the image size and random horizontal flip (the standard
CIFAR recipe), applied per batch, vectorised, seeded. The padding is zero in
pixel space (black), as in torchvision's `RandomCrop(32, padding=4)`.

Both draw each epoch's order and augmentation from ``(seed, epoch)`` and
start where an ``EpochPosition`` says (`keras_autorep.data.epochs`), so a
fit interrupted mid-epoch can go on at the batch it reached.

Two implementations with the same output format and scaling (their random
draws differ):

* `make_tf_datasets`: `tf.data` (shuffle, batch, augment, prefetch), the fast
  path with the TensorFlow backend;
* `ImageArrayDataset`: a `keras.utils.PyDataset` doing the same in NumPy, for
  backends without TensorFlow (e.g. JAX on a GPU machine).

`make_datasets` picks `tf.data` when the Keras backend is TensorFlow and the
PyDataset otherwise (`keras_autorep.backends`: this keeps TensorFlow out of
JAX/PyTorch processes, where it would also claim GPU memory).
"""

import math

import keras
import numpy as np

from keras_autorep.backends import current
from keras_autorep.data.epochs import (
    EpochPosition,
    epoch_order,
    epoch_passes,
    epoch_seed,
)


def normalization_layer(info, pixel_scale=1.0, name="normalization"):
    """Per-channel `(x - mean) / std` with the dataset statistics.

    Args:
        info: `DatasetInfo` from `load_dataset`.
        pixel_scale: value of a full-intensity pixel in the layer's input:
            1.0 for the [0, 1] images of these pipelines, 255.0 for raw
            8-bit pixel values.
        name: layer name.

    Returns:
        A `keras.layers.Normalization` with fixed mean and variance.
    """
    mean = np.asarray(info.mean, np.float64) * pixel_scale
    std = np.asarray(info.std, np.float64) * pixel_scale
    return keras.layers.Normalization(
        axis=-1, mean=mean.tolist(), variance=(std ** 2).tolist(), name=name
    )


def random_crop_flip(images, pad, rng):
    """Pads, randomly crops back and randomly flips a batch (NumPy).

    Args:
        images: uint8 array `(B, H, W, C)`.
        pad: zero padding on each side before cropping.
        rng: `numpy.random.Generator`.

    Returns:
        Array of the input's shape and dtype.
    """
    batch, height, width, channels = images.shape
    padded = np.zeros(
        (batch, height + 2 * pad, width + 2 * pad, channels), images.dtype)
    padded[:, pad:pad + height, pad:pad + width] = images
    offsets = rng.integers(0, 2 * pad + 1, size=(batch, 2))
    flip = rng.integers(0, 2, size=batch).astype(bool)
    out = np.empty_like(images)
    for i, ((row, col), flipped) in enumerate(zip(offsets, flip)):
        crop = padded[i, row:row + height, col:col + width]
        out[i] = crop[:, ::-1] if flipped else crop
    return out


class ImageArrayDataset(keras.utils.PyDataset):
    """Batches of [0, 1] float32 images from uint8 arrays, for any backend.

    Shuffles with a new seeded permutation every epoch and, with `augment`,
    applies `random_crop_flip` with a generator seeded by
    `(seed, epoch, batch index)`, so results do not depend on worker order.
    The epoch and the batches of it left out come from `position` at every
    epoch start (`on_epoch_begin`).

    Args:
        x: uint8 images `(N, H, W, C)`.
        y: integer labels `(N,)`.
        batch_size: batch size (the last batch may be smaller).
        shuffle: reshuffle every epoch.
        augment: random pad-crop and horizontal flip.
        pad: padding for the random crop.
        seed: seed of the shuffling and augmentation.
        position: the `EpochPosition` epochs start from (default: a new
            one).
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size` of
            `keras.utils.PyDataset` (prefetching).
    """

    def __init__(self, x, y, batch_size, shuffle=False, augment=False, pad=4,
                 seed=0, position=None, **kwargs):
        super().__init__(**kwargs)
        if len(x) != len(y):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
        self.x = x
        self.y = np.asarray(y, np.int32)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment = augment
        self.pad = pad
        self.seed = seed
        self.position = position or EpochPosition()
        # Until the first epoch starts, the epoch the position points at.
        self.epoch, self.skip = self.position.epoch, self.position.skip
        self._order = self._permutation()

    def _permutation(self):
        if not self.shuffle:
            return np.arange(len(self.x))
        return np.random.default_rng([self.seed, self.epoch]).permutation(
            len(self.x))

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    @property
    def num_batches(self):
        """The batches of this epoch (fewer than ``len`` in a resumed one)."""
        return len(self) - self.skip

    def __getitem__(self, index):
        if not 0 <= index < self.num_batches:
            raise IndexError(
                f"batch {index} out of range [0, {self.num_batches})")
        index += self.skip
        batch = self._order[index * self.batch_size:
                            (index + 1) * self.batch_size]
        images = self.x[batch]
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            images = random_crop_flip(images, self.pad, rng)
        return images.astype(np.float32) / np.float32(255), self.y[batch]

    def on_epoch_begin(self):
        self.epoch, self.skip = self.position.take()
        self._order = self._permutation()


def _check_arrays(split, info):
    x, y = split
    if tuple(x.shape[1:]) != tuple(info.image_shape) or x.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 images of shape (N,) + {tuple(info.image_shape)}"
            f", got {x.dtype} {x.shape}"
        )
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    return x, np.asarray(y, np.int32)


def _tf_pipeline(tf, x, y, batch_size, shuffle, augment, pad, seed,
                 position=None):
    images, labels = tf.constant(x), tf.constant(y)
    height, width = x.shape[1:3]

    def crop_flip(batch, rng_seed):
        size = tf.shape(batch)[0]
        padded = tf.pad(batch, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        offset_seed, flip_seed = tf.unstack(
            tf.random.experimental.stateless_split(rng_seed, 2))
        offsets = tf.random.stateless_uniform(
            [size, 2], offset_seed, 0, 2 * pad + 1, dtype=tf.int32)
        flip = tf.random.stateless_uniform(
            [size, 1], flip_seed, 0, 2, dtype=tf.int32)
        rows = offsets[:, :1] + tf.range(height)
        cols = offsets[:, 1:] + tf.range(width)
        cols = tf.where(flip == 1, tf.reverse(cols, [1]), cols)
        out = tf.gather(padded, rows, axis=1, batch_dims=1)
        return tf.gather(out, cols, axis=2, batch_dims=1)

    def load(index, rng_seed=None):
        batch = tf.gather(images, index)
        if rng_seed is not None:
            batch = crop_flip(batch, rng_seed)
        return tf.cast(batch, tf.float32) / 255.0, tf.gather(labels, index)

    if not shuffle:
        return tf.data.Dataset.range(len(x)).batch(batch_size).map(
            load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
            tf.data.AUTOTUNE)

    def epoch_pass(epoch, skip):
        drawn = epoch_seed(tf, seed, epoch)
        ds = tf.data.Dataset.from_tensor_slices(
            epoch_order(tf, len(x), drawn)).batch(batch_size).enumerate()
        return ds.skip(skip).map(
            lambda i, index: load(index, tf.random.experimental
                                  .stateless_fold_in(drawn, i)
                                  if augment else None),
            num_parallel_calls=tf.data.AUTOTUNE)

    return epoch_passes(tf, position or EpochPosition(),
                        math.ceil(len(x) / batch_size), epoch_pass)


def make_tf_datasets(train, test, info, batch_size, augment=True, seed=0,
                     pad=4, position=None):
    """`tf.data` pipelines over `load_dataset` arrays.

    Args:
        train: `(x_train, y_train)` uint8 images and integer labels.
        test: `(x_test, y_test)`.
        info: the `DatasetInfo` (image shape check).
        batch_size: batch size.
        augment: random pad-crop and flip on the train split.
        seed: seed of shuffling and augmentation.
        pad: padding for the random crop.
        position: the `EpochPosition` the train split's epochs start from
            (default: a new one).

    Returns:
        `(train_ds, test_ds)` yielding `(float32 images in [0, 1], int32
        labels)`; the train split is reshuffled every epoch, the test split
        is in order and never augmented.
    """
    import tensorflow as tf

    train = _check_arrays(train, info)
    test = _check_arrays(test, info)
    return (
        _tf_pipeline(tf, *train, batch_size, True, augment, pad, seed,
                     position),
        _tf_pipeline(tf, *test, batch_size, False, False, pad, seed),
    )


def make_datasets(train, test, info, batch_size, augment=True, seed=0, pad=4,
                  pipeline="auto", position=None, **pydataset_kwargs):
    """Train and test pipelines for the current Keras backend.

    Args:
        train: `(x_train, y_train)` uint8 images and integer labels.
        test: `(x_test, y_test)`.
        info: the `DatasetInfo`.
        batch_size: batch size.
        augment: random pad-crop and flip on the train split.
        seed: seed of shuffling and augmentation.
        pad: padding for the random crop.
        pipeline: `"auto"` (`"tf"` with the TensorFlow backend, else
            `"numpy"`), `"tf"` (`make_tf_datasets`) or `"numpy"`
            (`ImageArrayDataset`).
        position: the `EpochPosition` the train split's epochs start from
            (default: a new one).
        **pydataset_kwargs: `workers`, `use_multiprocessing`,
            `max_queue_size` for the `"numpy"` pipeline.

    Returns:
        `(train_ds, test_ds)` yielding `(float32 images in [0, 1], int32
        labels)`.
    """
    if pipeline == "auto":
        pipeline = current().pipeline
    if pipeline == "tf":
        return make_tf_datasets(train, test, info, batch_size, augment, seed,
                                pad, position)
    if pipeline != "numpy":
        raise ValueError(
            f"pipeline must be 'auto', 'tf' or 'numpy', got {pipeline!r}")
    train = _check_arrays(train, info)
    test = _check_arrays(test, info)
    return (
        ImageArrayDataset(*train, batch_size, shuffle=True, augment=augment,
                          pad=pad, seed=seed, position=position,
                          **pydataset_kwargs),
        ImageArrayDataset(*test, batch_size, **pydataset_kwargs),
    )
