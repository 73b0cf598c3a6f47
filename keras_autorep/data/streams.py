"""Datasets streamed from their image files: ImageNet, and any image tree
too large to decode into memory.

`load_image_streams(name, data_dir, image_size)` returns `(train, test,
info)` with two `ImageStream`s: each split's records (an encoded image and
its label) are read, decoded, cropped to `image_size` and batched by
`tf.data` while training; only the labels are held in memory. Sources:

* `data_dir` an image-folder tree ``{train,test}/<class>/*`` (``val/`` may
  stand for ``test/``, as in ImageNet's ``val/<wnid>/`` arrangement) with
  images of any size;
* `data_dir` the manual-download folder of tensorflow-datasets'
  ``imagenet2012``, holding ``ILSVRC2012_img_train.tar`` and
  ``ILSVRC2012_img_val.tar``: tensorflow-datasets prepares the dataset from
  them into its data folder once (about 156 GB by tensorflow-datasets'
  catalogue), later loads read it;
* `data_dir=None`: ``imagenet2012`` as already prepared in the
  tensorflow-datasets data folder.

The pipelines yield float32 images in [0, 1] and int32 labels, like
`make_datasets`. Training images get an Inception-style random-resized crop
(8 to 100 % of the area, aspect ratio 3/4 to 4/3) and a random horizontal
flip; evaluation images are resized so that their shorter side is
`image_size / 0.875`, then center-cropped. `DatasetInfo.mean`/`std` are
measured on 1,000 evaluation-cropped training images (a seeded sample; of
tensorflow-datasets, the first ones of its shuffled split).

Without `subset` or `classes` nothing but the test labels is read before
training (the train split's size comes from tensorflow-datasets' metadata);
with them, the labels of both splits are read once (images left encoded).
An image file that does not decode stops the pipeline with TensorFlow's
``InvalidArgumentError``.
"""

import functools
from pathlib import Path

import numpy as np

from keras_autorep.data import layout
from keras_autorep.data.sources import (
    DatasetInfo,
    check_name,
    check_subset,
    holdout_positions,
    list_files,
    sample_positions,
    select_examples,
)
from keras_autorep.data.tfds_source import DataUnavailableError

IMAGENET = "imagenet2012"
IMAGENET_ARCHIVES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
TFDS_SPLITS = ("train", "validation")
CROP_FRACTION = 0.875  # evaluation: center crop of the resized image
CROP_AREA = (0.08, 1.0)  # training: fraction of the image area cropped
CROP_ASPECT = (3 / 4, 4 / 3)
SHUFFLE_BUFFER = 10_000  # records of tensorflow-datasets shuffled at once
STATS_IMAGES = 1_000  # training images the channel statistics come from


class FileRecords:
    """The records of one split of an image tree: file paths and labels."""

    # Records can be read in any order: samples are drawn at random.
    random_access = True

    def __init__(self, paths, labels):
        self.paths = np.asarray(paths, dtype=object)
        self.labels = np.asarray(labels, np.int32)

    def __len__(self):
        return len(self.paths)

    def encoded(self, tf, indices, shuffle, seed):
        """``tf.data`` of ``(file bytes, label)`` at ``indices``, in that
        order or shuffled every epoch."""
        paths = self.paths[indices].astype(str)
        ds = tf.data.Dataset.from_tensor_slices((paths, self.labels[indices]))
        if shuffle:
            ds = ds.shuffle(len(paths), seed=seed,
                            reshuffle_each_iteration=True)
        return ds.map(lambda path, label: (tf.io.read_file(path), label),
                      num_parallel_calls=tf.data.AUTOTUNE)


class TfdsRecords:
    """The records of one split of a prepared tensorflow-datasets dataset;
    the labels are read (images left encoded) when first needed."""

    # Records are read in their stored order (tensorflow-datasets shuffles
    # a split when preparing it): samples are its first records.
    random_access = False

    def __init__(self, builder, split):
        self.builder, self.split = builder, split

    def __len__(self):
        try:
            return self.builder.info.splits[self.split].num_examples
        except KeyError:  # no split metadata (tensorflow-datasets' mock)
            return len(self.labels)

    def _all(self, tf):
        import tensorflow_datasets as tfds

        ds = self.builder.as_dataset(
            split=self.split, shuffle_files=False,
            decoders={"image": tfds.decode.SkipDecoding()})
        return ds.map(lambda ex: (ex["image"], tf.cast(ex["label"], tf.int32)),
                      num_parallel_calls=tf.data.AUTOTUNE)

    @functools.cached_property
    def labels(self):
        import tensorflow as tf

        batches = self._all(tf).map(lambda image, label: label).batch(65_536)
        return np.concatenate([b.numpy() for b in batches]).astype(np.int32)

    def encoded(self, tf, indices, shuffle, seed):
        """``tf.data`` of ``(encoded image, label)`` at ``indices`` (sorted),
        in the stored order or shuffled through a buffer every epoch."""
        ds = self._all(tf)
        if len(indices) < len(self):
            keep = np.zeros(len(self), bool)
            keep[indices] = True
            keep = tf.constant(keep)
            # The reading stops once the last kept record has been found.
            ds = ds.take(int(indices[-1]) + 1).enumerate().filter(
                lambda i, record: tf.gather(keep, i)).map(
                lambda i, record: record)
        if shuffle:
            ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed,
                            reshuffle_each_iteration=True)
        return ds


class ImageStream:
    """One split of a dataset streamed from its files.

    Args:
        records: the split's `FileRecords` or `TfdsRecords`.
        image_size: side of the square images the pipelines yield.
        indices: sorted positions of the records in use (default: all).
        relabel: array mapping stored labels to the labels yielded
            (a class selection); default: unchanged.
    """

    def __init__(self, records, image_size, indices=None, relabel=None):
        self.records = records
        self.image_size = int(image_size)
        self.indices = (np.arange(len(records)) if indices is None
                        else np.asarray(indices, np.int64))
        self.relabel = relabel

    def __len__(self):
        return len(self.indices)

    @property
    def labels(self):
        """int32 labels of the images, in the order of ``dataset()``
        without shuffling."""
        labels = self.records.labels[self.indices]
        return labels if self.relabel is None else self.relabel[labels]

    def subset(self, positions):
        """The stream of this one's images at ``positions`` (sorted)."""
        return ImageStream(self.records, self.image_size,
                           self.indices[np.asarray(positions)], self.relabel)

    def dataset(self, batch_size, training=False, seed=0):
        """Batches of ``(float32 images in [0, 1], int32 labels)``:
        shuffled and randomly cropped and flipped with ``training``, else
        in order and center-cropped."""
        import tensorflow as tf

        size = self.image_size
        ds = self.records.encoded(tf, self.indices, training, seed)
        if self.relabel is not None:
            relabel = tf.constant(self.relabel)
            ds = ds.map(lambda image, label: (image, tf.gather(relabel,
                                                               label)))
        if training:
            seeds = tf.data.Dataset.random(
                seed=seed, rerandomize_each_iteration=True).batch(2)
            ds = tf.data.Dataset.zip((ds, seeds)).map(
                lambda record, pair: (
                    random_crop(decode(tf, record[0]), size, pair), record[1]),
                num_parallel_calls=tf.data.AUTOTUNE)
        else:
            ds = ds.map(lambda image, label: (
                center_crop(decode(tf, image), size), label),
                num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def take(self, count):
        """``(images, labels)``: the first ``count`` images, center-cropped,
        as float32 arrays in [0, 1]."""
        images, labels = [], []
        for x, y in self.subset(np.arange(min(count, len(self)))).dataset(
                256):
            images.append(x.numpy())
            labels.append(y.numpy())
        return np.concatenate(images), np.concatenate(labels)

    def sample(self, count, seed=None):
        """``(images, labels)`` of ``take``: ``count`` images, the first
        ones, or with a ``seed`` a seeded random sample where the records
        can be read in any order (else the first ones, which
        tensorflow-datasets stored shuffled)."""
        if not self.records.random_access:
            seed = None
        return self.subset(sample_positions(len(self), count, seed)).take(
            count)

    def holdout(self, fraction, seed):
        """``(fit, validation)`` streams: a seeded random ``fraction`` of
        the images held out."""
        fit, validation = holdout_positions(len(self), fraction, seed)
        return self.subset(np.sort(fit)), self.subset(np.sort(validation))


def decode(tf, encoded):
    """An encoded JPEG, PNG, BMP or GIF image as uint8 RGB (grayscale and
    alpha images converted)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def random_crop(image, size, seed):
    """Random-resized crop of ``CROP_AREA`` and ``CROP_ASPECT`` to
    ``size`` x ``size`` and a random horizontal flip, from the stateless
    ``seed`` (two int64); float32 in [0, 1]."""
    import tensorflow as tf

    crop_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 2))
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=crop_seed, min_object_covered=0.0,
        aspect_ratio_range=CROP_ASPECT, area_range=CROP_AREA,
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    crop = tf.image.resize(tf.slice(image, begin, extent), (size, size),
                           antialias=True)
    crop = tf.image.stateless_random_flip_left_right(crop, flip_seed)
    return tf.clip_by_value(crop / 255.0, 0.0, 1.0)


def center_crop(image, size):
    """Resize the shorter side to ``size / CROP_FRACTION``, crop the center
    ``size`` x ``size``; float32 in [0, 1]."""
    import tensorflow as tf

    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = size / CROP_FRACTION / tf.reduce_min(shape)
    resized = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), size)
    image = tf.image.resize(image, resized, antialias=True)
    top, left = (resized[0] - size) // 2, (resized[1] - size) // 2
    crop = tf.image.crop_to_bounding_box(image, top, left, size, size)
    return tf.clip_by_value(crop / 255.0, 0.0, 1.0)


def load_image_streams(name, data_dir=None, image_size=224, subset=None,
                       seed=0, classes=None, tfds_data_dir=None):
    """Streams of a dataset's train and test (ImageNet: validation) splits.

    Args:
        name: dataset name (``"imagenet2012"`` for the tensorflow-datasets
            sources; any name of an image-folder tree).
        data_dir: an image-folder tree, the folder with the ImageNet
            archives (``IMAGENET_ARCHIVES``), or ``None`` for
            ``imagenet2012`` prepared in the tensorflow-datasets folder.
        image_size: side of the square images yielded.
        subset: optional ``(n_train, n_test)`` class-balanced sample, as in
            `load_dataset`.
        seed: seed of the subset and of the statistics sample.
        classes: class selection, as in `load_dataset`.
        tfds_data_dir: the tensorflow-datasets data folder (default: its
            own, ``~/tensorflow_datasets``).

    Returns:
        ``(train, test, info)``: two `ImageStream` and a `DatasetInfo`.

    Raises:
        FileNotFoundError: ``data_dir`` does not exist.
        ValueError: bad arguments, no supported tree in ``data_dir``.
        DataUnavailableError: ``imagenet2012`` is neither prepared nor
            preparable (archives missing, tensorflow-datasets failing).
    """
    check_name(name)
    if not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
    subset = check_subset(subset)
    folder = None if data_dir is None else Path(data_dir).expanduser()
    if folder is not None and not folder.exists():
        raise FileNotFoundError(f"data_dir {str(folder)!r} does not exist")
    if folder is not None and not all(
            (folder / archive).is_file() for archive in IMAGENET_ARCHIVES):
        if not folder.is_dir():
            raise ValueError(
                f"data_dir {str(folder)!r}: streamed datasets are read from "
                "a folder (extract the archive), or from tensorflow-datasets")
        records, class_names = _tree_records(folder)
    else:
        if name != IMAGENET:
            raise ValueError(
                f"dataset {name!r}: tensorflow-datasets is used for "
                f"{IMAGENET!r} only; pass an image-folder tree as data_dir")
        records, class_names = _tfds_records(folder, tfds_data_dir)
    indices, relabel = (None, None), None
    if classes is not None or subset is not None:
        class_names, indices, relabel = select_examples(
            class_names, records[0].labels, records[1].labels, classes,
            subset, seed)
        if np.array_equal(relabel, np.arange(len(relabel))):
            relabel = None  # every class, in its order
    train, test = (ImageStream(r, image_size, i, relabel)
                   for r, i in zip(records, indices))
    for split, stream in (("train", train), ("test", test)):
        if not len(stream):
            raise ValueError(f"{name}: no {split} images found")
    images, _ = train.sample(STATS_IMAGES, seed)
    info = DatasetInfo(
        name=name, num_classes=len(class_names),
        image_shape=(int(image_size), int(image_size), 3),
        class_names=tuple(class_names),
        mean=tuple(float(m) for m in images.mean(axis=(0, 1, 2))),
        std=tuple(float(s) for s in images.std(axis=(0, 1, 2))))
    return train, test, info


def _tree_records(folder):
    """``((train, test) FileRecords, class names)`` of an image tree."""
    paths = list_files(folder)
    try:
        root, kind = layout.find_root(paths)
        class_names, train, test = layout.index_files(
            paths, root, kind,
            lambda rel: (folder / rel).read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{folder}: {e}") from None
    return tuple(FileRecords([str(folder / p) for p in files], labels)
                 for files, labels in (train, test)), class_names


def _tfds_records(manual_dir, data_dir):
    """``((train, validation) TfdsRecords, class names)`` of
    ``imagenet2012``, prepared from ``manual_dir``'s archives when it is
    not yet."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataUnavailableError(
            f"cannot load {IMAGENET!r}: tensorflow_datasets is not "
            f"importable ({e})") from e
    builder = tfds.builder(IMAGENET, data_dir=data_dir)
    if not builder.is_prepared():
        if manual_dir is None:
            raise DataUnavailableError(
                f"cannot load {IMAGENET!r}: it is not prepared in "
                f"{builder.data_dir}; pass --data-dir FOLDER holding "
                f"{' and '.join(IMAGENET_ARCHIVES)} (from image-net.org) to "
                "prepare it, or an image-folder tree")
        try:
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(
                    manual_dir=str(manual_dir)))
        except Exception as e:  # tensorflow-datasets' failure, as one line
            raise DataUnavailableError(
                f"cannot prepare {IMAGENET!r} from {manual_dir}: "
                f"{type(e).__name__}: {e}") from e
    class_names = list(builder.info.features["label"].names)
    return tuple(TfdsRecords(builder, split)
                 for split in TFDS_SPLITS), class_names
