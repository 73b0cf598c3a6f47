"""Decoding and cropping streamed images; finding the files that do not
decode.

``decode`` is what the streamed pipelines decode every image with
(TensorFlow's ``decode_image``: JPEG, PNG, BMP, GIF by their content, so a
PNG named ``.JPEG`` or a CMYK JPEG decodes). ``unreadable_images`` runs it
over the files of an image tree once before training, in parallel, and
names the files it fails on with TensorFlow's reason (a truncated JPEG, an
empty file, a file that is no image); the answer is cached by the tree's
fingerprint and the files asked about, so a resumed run does not decode the
tree again.
"""

import hashlib
import json
import os
import re

from keras_autorep.data.cache import cache_path, write_text_atomic

# A decode error's text without TensorFlow's op and device decorations.
_DECORATION = re.compile(r"\{\{[^}]*\}\}|\[Op:[^\]]*\].*$")
PROGRESS_IMAGES = 1_000  # checks of more images say so first
LISTED = 5  # files named in a one-line description
CROP_FRACTION = 0.875  # evaluation: center crop of the resized image
CROP_AREA = (0.08, 1.0)  # training: fraction of the image area cropped
CROP_ASPECT = (3 / 4, 4 / 3)


def decode(tf, encoded):
    """An encoded JPEG, PNG, BMP or GIF image as uint8 RGB (grayscale and
    alpha images converted)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def decode_error(path):
    """Why ``decode`` fails on the file ``path`` (one line), or ``None``
    when it decodes."""
    import tensorflow as tf

    try:
        decode(tf, tf.io.read_file(path))
    except tf.errors.OpError as e:
        return " ".join(_DECORATION.sub("", e.message).split()) or type(
            e).__name__
    return None


def _failing(paths):
    """The ``paths`` ``decode`` fails on, found by decoding them all in
    parallel."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda path: (path, tf.shape(decode(tf, tf.io.read_file(path)))),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    decoded = set()
    for batch, _ in ds.ignore_errors().batch(4096).as_numpy_iterator():
        decoded.update(path.decode() for path in batch)
    return [path for path in paths if path not in decoded]


def unreadable_images(folder, files, fingerprint, cache_dir):
    """``[(file, reason)]``: the ``files`` (relative to ``folder``) that
    ``decode`` cannot decode, in their order.

    Args:
        folder: the image tree.
        files: relative paths of the images to check.
        fingerprint: the tree's identity (``sources.folder_fingerprint``);
            with ``files`` it keys the cached answer.
        cache_dir: folder of the cached answers.
    """
    files = list(files)
    digest = hashlib.sha1("\n".join(files).encode()).hexdigest()
    cached = cache_path(cache_dir, "unreadable", fingerprint,
                        digest).with_suffix(".json")
    try:
        return [tuple(pair) for pair in json.loads(cached.read_text())]
    except (OSError, ValueError):
        pass
    if len(files) >= PROGRESS_IMAGES:
        print(f"Checking that the {len(files):,} images of {folder} decode "
              "(once: the answer is cached)", flush=True)
    failing = _failing([os.path.join(folder, f) for f in files])
    found = [(os.path.relpath(path, folder), reason) for path in failing
             if (reason := decode_error(path)) is not None]
    cached.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(cached, json.dumps(found))
    return found


def describe_unreadable(unreadable):
    """``"N image file(s) that do not decode: FILE (REASON); ..."``: one
    line naming the first ``LISTED`` ``(file, reason)`` pairs of
    ``unreadable_images``."""
    named = "; ".join(f"{file} ({reason})"
                      for file, reason in unreadable[:LISTED])
    more = len(unreadable) - LISTED
    return (f"{len(unreadable)} image file(s) that do not decode: {named}"
            + (f"; and {more} more" if more > 0 else ""))


class UnreadableImagesError(ValueError):
    """Image files in use do not decode (a strict load)."""


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
