"""The records of a streamed split: the files of an image tree, or the
records of tensorflow-datasets' prepared ``imagenet2012``.

A records object gives a ``tf.data`` of ``(record, label)`` (``reader``),
in order or in an order a stateless seed draws, and the encoded image of a
record (``read``); `keras_autorep.data.streams` decodes and crops them.
"""

import functools

import numpy as np

from keras_autorep.data import layout
from keras_autorep.data.decoding import (
    UnreadableImagesError,
    describe_unreadable,
    unreadable_images,
)
from keras_autorep.data.epochs import epoch_order
from keras_autorep.data.sources import folder_fingerprint, list_files
from keras_autorep.data.tfds_source import DataUnavailableError

IMAGENET = "imagenet2012"
IMAGENET_ARCHIVES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
TFDS_SPLITS = ("train", "validation")
SHUFFLE_BUFFER = 10_000  # records of tensorflow-datasets shuffled together


class FileRecords:
    """The records of one split of an image tree: file paths and labels."""

    # Records can be read in any order: samples are drawn at random.
    random_access = True

    def __init__(self, paths, labels):
        self.paths = np.asarray(paths, dtype=object)
        self.labels = np.asarray(labels, np.int32)

    def __len__(self):
        return len(self.paths)

    def reader(self, tf, indices):
        """``records(seed=None)``: the ``tf.data`` of ``(file path, label)``
        at ``indices``, in that order or in the order a stateless ``seed``
        draws."""
        paths = tf.constant(self.paths[indices].astype(str))
        labels = tf.constant(self.labels[indices])

        def records(seed=None):
            if seed is None:
                return tf.data.Dataset.from_tensor_slices((paths, labels))
            order = epoch_order(tf, len(indices), seed)
            return tf.data.Dataset.from_tensor_slices(
                (tf.gather(paths, order), tf.gather(labels, order)))

        return records

    @staticmethod
    def read(tf, path):
        """The encoded image of a record."""
        return tf.io.read_file(path)


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

    def reader(self, tf, indices):
        """``records(seed=None)``: the ``tf.data`` of ``(encoded image,
        label)`` at ``indices`` (sorted), in the stored order or, with a
        stateless ``seed``, each block of ``SHUFFLE_BUFFER`` consecutive
        records in an order drawn from the seed and the block's index."""
        ds = self._all(tf)
        if len(indices) < len(self):
            keep = np.zeros(len(self), bool)
            keep[indices] = True
            keep = tf.constant(keep)
            # The reading stops once the last kept record has been found.
            ds = ds.take(int(indices[-1]) + 1).enumerate().filter(
                lambda i, record: tf.gather(keep, i)).map(
                lambda i, record: record)

        def shuffled(seed, block, records):
            order = epoch_order(
                tf, tf.shape(records[1], out_type=tf.int64)[0],
                tf.random.experimental.stateless_fold_in(seed, block))
            return tf.data.Dataset.from_tensor_slices(
                tuple(tf.gather(part, order) for part in records))

        def records(seed=None):
            if seed is None:
                return ds
            # The next block is read while this one is yielded.
            return ds.batch(SHUFFLE_BUFFER).prefetch(1).enumerate().flat_map(
                lambda block, records: shuffled(seed, block, records))

        return records

    @staticmethod
    def read(tf, image):
        """The encoded image of a record."""
        return image


def tree_records(folder):
    """``((train, test) FileRecords, class names, fingerprint)`` of an
    image tree."""
    paths = list_files(folder)
    try:
        root, kind = layout.find_root(paths)
        class_names, train, test = layout.index_files(
            paths, root, kind,
            lambda rel: (folder / rel).read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{folder}: {e}") from None
    return (tuple(FileRecords([str(folder / p) for p in files], labels)
                  for files, labels in (train, test)), class_names,
            folder_fingerprint(folder, paths))


def drop_unreadable(folder, fingerprint, records, indices, cache_dir, strict):
    """``(indices, unreadable)``: the positions in use of each split's
    records without the image files that do not decode, and those files
    with their reasons (``unreadable_images``); with ``strict`` they are an
    ``UnreadableImagesError`` instead."""
    indices = [np.arange(len(r)) if i is None else i
               for r, i in zip(records, indices)]
    prefix = len(str(folder)) + 1
    files = [path[prefix:] for r, i in zip(records, indices)
             for path in r.paths[i]]
    unreadable = tuple(unreadable_images(folder, files, fingerprint,
                                         cache_dir))
    if unreadable and strict:
        raise UnreadableImagesError(
            f"{folder} holds {describe_unreadable(unreadable)}")
    bad = [str(folder / file) for file, _ in unreadable]
    return [i[~np.isin(r.paths[i].astype(str), bad)]
            for r, i in zip(records, indices)], unreadable


def tfds_records(manual_dir, data_dir):
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
