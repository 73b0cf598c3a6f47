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

The training pipeline draws each epoch's order and crops from ``(seed,
epoch)`` (`keras_autorep.data.epochs`), so a fit interrupted mid-epoch can
go on at the batch it reached.

The images of an image tree in use are decoded once before training
(`keras_autorep.data.decoding`, cached): the files that do not decode are
left out and listed in ``DatasetInfo.unreadable`` with their reasons, or,
with ``strict_images``, stop the load with a ``ValueError`` naming them.
tensorflow-datasets decoded every record of ``imagenet2012`` when it
prepared the split.
"""

import math
from pathlib import Path

import numpy as np

from keras_autorep.data.decoding import center_crop, decode, random_crop
from keras_autorep.data.epochs import EpochPosition, epoch_passes, epoch_seed
from keras_autorep.data.records import (
    IMAGENET,
    IMAGENET_ARCHIVES,
    drop_unreadable,
    tfds_records,
    tree_records,
)
from keras_autorep.data.sources import (
    DEFAULT_CACHE_DIR,
    DatasetInfo,
    check_name,
    check_subset,
    holdout_positions,
    sample_positions,
    select_examples,
)

STATS_IMAGES = 1_000  # training images the channel statistics come from


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

    def dataset(self, batch_size, training=False, seed=0, position=None):
        """Batches of ``(float32 images in [0, 1], int32 labels)``.

        With ``training``, every epoch is shuffled, cropped and flipped as
        ``(seed, epoch)`` draws it, from the epoch and batch ``position``
        (an ``EpochPosition``; default: a new one) says; else in order and
        center-cropped.
        """
        import tensorflow as tf

        size, read = self.image_size, self.records.read
        records = self.records.reader(tf, self.indices)
        relabel = None if self.relabel is None else tf.constant(self.relabel)

        def image_of(record):
            return decode(tf, read(tf, record[0]))

        def label_of(record):
            return (record[1] if relabel is None
                    else tf.gather(relabel, record[1]))

        if not training:
            return records().map(
                lambda *record: (center_crop(image_of(record), size),
                                 label_of(record)),
                num_parallel_calls=tf.data.AUTOTUNE).batch(
                batch_size).prefetch(tf.data.AUTOTUNE)

        def epoch_pass(epoch, skip):
            drawn = epoch_seed(tf, seed, epoch)
            # Skipped records are neither read nor decoded.
            return records(drawn).enumerate().skip(skip * batch_size).map(
                lambda i, record: (random_crop(
                    image_of(record), size,
                    tf.random.experimental.stateless_fold_in(drawn, i)),
                    label_of(record)),
                num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)

        return epoch_passes(tf, position or EpochPosition(),
                            math.ceil(len(self) / batch_size), epoch_pass)

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


def load_image_streams(name, data_dir=None, image_size=224, subset=None,
                       seed=0, classes=None, tfds_data_dir=None,
                       cache_dir=None, strict_images=False):
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
        cache_dir: where the check of an image tree's files is cached
            (default ``~/.cache/keras_autorep``).
        strict_images: an image file of the tree that does not decode
            stops the load instead of being left out.

    Returns:
        ``(train, test, info)``: two `ImageStream` and a `DatasetInfo`
        (``info.unreadable``: the image files left out, with reasons).

    Raises:
        FileNotFoundError: ``data_dir`` does not exist.
        ValueError: bad arguments, no supported tree in ``data_dir``, with
            ``strict_images`` image files that do not decode.
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
        records, class_names, fingerprint = tree_records(folder)
    else:
        fingerprint = None
        if name != IMAGENET:
            raise ValueError(
                f"dataset {name!r}: tensorflow-datasets is used for "
                f"{IMAGENET!r} only; pass an image-folder tree as data_dir")
        records, class_names = tfds_records(folder, tfds_data_dir)
    indices, relabel = (None, None), None
    if classes is not None or subset is not None:
        class_names, indices, relabel = select_examples(
            class_names, records[0].labels, records[1].labels, classes,
            subset, seed)
        if np.array_equal(relabel, np.arange(len(relabel))):
            relabel = None  # every class, in its order
    unreadable = ()
    if fingerprint is not None:
        indices, unreadable = drop_unreadable(
            folder, fingerprint, records, indices,
            Path(cache_dir or DEFAULT_CACHE_DIR).expanduser(), strict_images)
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
        std=tuple(float(s) for s in images.std(axis=(0, 1, 2))),
        unreadable=unreadable)
    return train, test, info
