"""Datasets as uint8 NumPy arrays: CIFAR-10/100, Tiny-ImageNet, image folders.

`load_dataset` reads one of three sources:

* `data_dir` a folder: an image-folder tree ``{train,test}/<class>/*`` or the
  Tiny-ImageNet-200 tree (see `keras_autorep.data.layout`), at the folder or
  somewhere below it;
* `data_dir` a ``.tar.gz``/``.tgz``/``.tar`` of such a tree: images are
  decoded straight from the archive, nothing is extracted to disk
  (`keras_autorep.data.archives`);
* `data_dir=None` (CIFAR only): `tensorflow_datasets`, downloading when the
  network is reachable, else `DataUnavailableError` at once.

Images are decoded once with Pillow (grayscale and palette images become RGB)
and the arrays cached as ``.npz`` in `cache_dir`, keyed by the source (path,
size and mtime; for folders the file list and folder mtimes), the class
selection, the subset and the seed. This module imports TensorFlow only for
the `tensorflow_datasets` source.

Integrity, checked when decoding (a cache hit only re-checks the cache file,
`keras_autorep.data.cache`): an archive is read to its end (gzip CRC and
length, tar end marker) and matched against a ``SHA256SUMS`` beside it when
one lists it; the known datasets must hold their published counts
(`keras_autorep.data.counts`); an image that does not decode stops the load
with its name. Every such problem is a ``ValueError`` with a one-line
message.
"""

import dataclasses
import hashlib
import os
import re
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from keras_autorep.data import archives, layout
from keras_autorep.data.cache import cache_path, read_cache, write_cache
from keras_autorep.data.counts import check_counts
from keras_autorep.data.tfds_source import (
    DataUnavailableError,
    load_tfds,
    no_data_message,
)

DEFAULT_CACHE_DIR = "~/.cache/keras_autorep"
TFDS_NAMES = ("cifar10", "cifar100")
KNOWN_NAMES = TFDS_NAMES + ("tiny_imagenet",)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Description of a loaded dataset.

    Attributes:
        name: dataset name, e.g. `"cifar10"`.
        num_classes: number of classes (labels are `0..num_classes-1`).
        image_shape: `(height, width, channels)`.
        class_names: class names in label order.
        mean: per-channel mean of the train images scaled to [0, 1].
        std: per-channel standard deviation of the train images in [0, 1].
        unreadable: ``(file, reason)`` of the image files left out because
            they do not decode (streamed image trees).
    """

    name: str
    num_classes: int
    image_shape: tuple
    class_names: tuple
    mean: tuple
    std: tuple
    unreadable: tuple = ()


def load_dataset(name, data_dir=None, cache_dir=None, subset=None, seed=0,
                 classes=None, verbose=1):
    """Loads a dataset as uint8 NHWC images and int32 labels.

    Args:
        name: `"cifar10"`, `"cifar100"` or `"tiny_imagenet"`; with `data_dir`
            any name of an image-folder dataset (used for the cache and info).
        data_dir: folder or .tar.gz/.tgz/.tar archive with the dataset tree;
            `None` loads CIFAR through `tensorflow_datasets`.
        cache_dir: cache folder for the decoded arrays, from files or from
            `tensorflow_datasets` (default `~/.cache/keras_autorep`).
        subset: optional `(n_train, n_test)`: a class-balanced random sample
            of at most that many images per split (`None` entries keep the
            whole split), drawn with `seed`.
        seed: seed of the subset sample.
        classes: `None` (all), an int `K` (the first `K` classes in label
            order) or a sequence of class names; labels are renumbered
            `0..len(classes)-1` in dataset order. Only the selected images
            are decoded.
        verbose: 0 silent, 1 progress while decoding.

    Returns:
        `((x_train, y_train), (x_test, y_test), info)`: uint8 arrays
        `(N, H, W, 3)`, int32 labels `(N,)` and a `DatasetInfo` whose
        mean/std come from the returned train images.

    Raises:
        FileNotFoundError: `data_dir` does not exist.
        ValueError: unsupported layout, unsafe, truncated or damaged archive,
            a known dataset short of images, an image that does not decode,
            bad arguments.
        DataUnavailableError: `data_dir=None` and the data can neither be
            found in the tensorflow-datasets folder nor downloaded.
    """
    check_name(name)
    subset = check_subset(subset)
    cache_dir = Path(cache_dir or DEFAULT_CACHE_DIR).expanduser()
    if data_dir is None:
        if name not in TFDS_NAMES:
            if name in KNOWN_NAMES:
                raise DataUnavailableError(no_data_message(
                    name, "it has no automatic download"))
            raise ValueError(
                f"unknown dataset {name!r}: without data_dir the name must be "
                f"one of {TFDS_NAMES}"
            )
        splits, class_names = _apply_selection(
            *load_tfds(name, cache_dir), classes, subset, seed)
    else:
        splits, class_names = _load_files(
            name, Path(data_dir).expanduser(), cache_dir, classes, subset,
            seed, verbose)
    (x_train, y_train), (x_test, y_test) = splits
    mean, std = _channel_stats(x_train)
    info = DatasetInfo(
        name=name,
        num_classes=len(class_names),
        image_shape=tuple(int(d) for d in x_train.shape[1:]),
        class_names=tuple(class_names),
        mean=tuple(mean),
        std=tuple(std),
    )
    return (x_train, y_train), (x_test, y_test), info


def check_name(name):
    """``ValueError`` unless ``name`` can name a dataset (and its cache
    files)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"invalid dataset name {name!r}")


def check_subset(subset):
    if subset is None:
        return None
    if not isinstance(subset, (tuple, list)) or len(subset) != 2 or not all(
            n is None or (isinstance(n, (int, np.integer)) and n > 0)
            for n in subset):
        raise ValueError(
            f"subset must be (n_train, n_test) with positive ints or None, "
            f"got {subset!r}"
        )
    return tuple(None if n is None else int(n) for n in subset)


def holdout_positions(size, fraction, seed):
    """``(fit, validation)`` positions among ``size`` examples: a seeded
    random ``fraction`` (at least one) held out, both in random order."""
    order = np.random.default_rng(seed).permutation(size)
    held_out = max(1, round(fraction * size))
    return order[held_out:], order[:held_out]


def sample_positions(size, count, seed=None):
    """Sorted positions of ``count`` of ``size`` examples: the first ones,
    or with a ``seed`` a seeded random sample."""
    if seed is None:
        return np.arange(min(count, size))
    return np.sort(np.random.default_rng(seed).permutation(size)[:count])


def split_validation(split, fraction, seed):
    """``(fit, validation)``: a seeded random ``fraction`` of the
    ``(x, y)`` arrays ``split`` held out for validation."""
    x, y = split
    fit, validation = holdout_positions(len(y), fraction, seed)
    return (x[fit], y[fit]), (x[validation], y[validation])


def _apply_selection(splits, class_names, classes, subset, seed):
    """`select_examples` applied to loaded arrays."""
    if classes is None and subset is None:
        return splits, class_names
    class_names, indices, relabel = select_examples(
        class_names, splits[0][1], splits[1][1], classes, subset, seed)
    return [(x[i], relabel[y[i]]) for (x, y), i in zip(splits, indices)], \
        class_names


def select_examples(class_names, y_train, y_test, classes, subset, seed):
    """Applies the class selection and the subset to label arrays.

    Returns:
        `(class_names, (idx_train, idx_test), relabel)`: kept names, sorted
        indices into each split and an array mapping old to new labels.
    """
    keep = layout.resolve_classes(class_names, classes)
    relabel = np.full(len(class_names), -1, np.int32)
    relabel[keep] = np.arange(len(keep), dtype=np.int32)
    indices = []
    for split, y in enumerate((y_train, y_test)):
        idx = np.flatnonzero(relabel[y] >= 0)
        n = subset[split] if subset else None
        if n is not None and n < len(idx):
            rng = np.random.default_rng([seed, split])
            idx = idx[_balanced_sample(relabel[y[idx]], n, rng)]
        indices.append(idx)
    return [class_names[i] for i in keep], indices, relabel


def _balanced_sample(labels, n, rng):
    """Sorted positions of `n` labels, as even across classes as possible."""
    order = rng.permutation(len(labels))
    shuffled = labels[order]
    rank = np.empty(len(labels), np.int64)
    for c in np.unique(shuffled):
        mask = shuffled == c
        rank[mask] = np.arange(mask.sum())
    return np.sort(order[np.argsort(rank, kind="stable")[:n]])


def _channel_stats(x, chunk=8192):
    """Per-channel mean and std of uint8 images in [0, 1], from histograms."""
    channels = x.shape[-1]
    counts = np.zeros((channels, 256), np.int64)
    for start in range(0, len(x), chunk):
        block = x[start:start + chunk].reshape(-1, channels)
        for c in range(channels):
            counts[c] += np.bincount(block[:, c], minlength=256)
    values = np.arange(256) / 255.0
    total = counts.sum(axis=1)
    mean = counts @ values / total
    var = (counts * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / total
    return [float(m) for m in mean], [float(s) for s in np.sqrt(var)]


# ---------------------------------------------------------------- files


def _load_files(name, data_dir, cache_dir, classes, subset, seed, verbose):
    if not data_dir.exists():
        raise FileNotFoundError(f"data_dir {str(data_dir)!r} does not exist")
    if data_dir.is_dir():
        paths = list_files(data_dir)
        source = folder_fingerprint(data_dir, paths)
    elif archives.is_archive(data_dir):
        source = archives.archive_fingerprint(data_dir)
    else:
        raise ValueError(
            f"data_dir {str(data_dir)!r} is neither a folder nor a "
            f".tar.gz/.tgz/.tar archive: {layout.LAYOUT_HELP}"
        )

    full = cache_path(cache_dir, name, source)
    cached = read_cache(full)
    if cached is not None:
        splits, class_names = cached
        check_counts(name, data_dir, class_names, splits[0][1], splits[1][1])
        return _apply_selection(splits, class_names, classes, subset, seed)
    selected = classes is not None or subset is not None
    target = cache_path(
        cache_dir, name, source, layout.classes_key(classes), subset, seed
    ) if selected else full
    cached = read_cache(target) if selected else None
    if cached is not None:
        return cached

    if data_dir.is_dir():
        splits, class_names = _decode_tree(
            name, data_dir, paths,
            lambda rel: (data_dir / rel).read_text(encoding="utf-8"),
            lambda rel: open(data_dir / rel, "rb"), None,
            classes, subset, seed, verbose)
    else:
        archives.check_sha256sums(data_dir)
        with archives.ArchiveReader(data_dir) as reader:
            splits, class_names = _decode_tree(
                name, data_dir, reader.paths, reader.read_text, reader.open,
                reader.offset, classes, subset, seed, verbose)
    write_cache(target, splits, class_names)
    return splits, class_names


def _decode_tree(name, source, paths, read_text, open_file, sort_key, classes,
                 subset, seed, verbose):
    """Finds the tree among `paths`, selects files and decodes both splits.

    Args:
        name: dataset name (for messages).
        source: folder or archive (for messages).
        paths: relative file paths of the source.
        read_text: relative path -> text of that file.
        open_file: relative path -> binary file object.
        sort_key: relative path -> read position, or `None` for any order.
        classes, subset, seed, verbose: as in `load_dataset`.

    Returns:
        `([(x_train, y_train), (x_test, y_test)], class_names)`.
    """
    try:
        root, kind = layout.find_root(paths)
        class_names, train, test = layout.index_files(paths, root, kind,
                                                      read_text)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
    check_counts(name, source, class_names, train[1], test[1])
    class_names, indices, relabel = select_examples(
        class_names, train[1], test[1], classes, subset, seed)
    files, labels = [], []
    for (split_files, split_labels), idx, split in zip(
            (train, test), indices, ("train", "test")):
        if len(idx) == 0:
            raise ValueError(f"{source}: no {split} images found")
        files.extend(split_files[i] for i in idx)
        labels.append(relabel[split_labels[idx]])
    if verbose and len(files) >= 1000:
        print(f"Decoding {len(files)} {name} images from {source}",
              flush=True)
    x = _decode_images(files, open_file, sort_key, source, verbose)
    n_train = len(labels[0])
    return [(x[:n_train], labels[0]), (x[n_train:], labels[1])], class_names


def list_files(folder):
    """All file paths below `folder`, relative, POSIX, hidden ones skipped."""
    paths = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, folder).replace(os.sep, "/")
        prefix = "" if rel == "." else rel + "/"
        paths.extend(prefix + f for f in sorted(filenames)
                     if not f.startswith("."))
    return paths


def folder_fingerprint(folder, paths):
    """Identity of a folder tree: path, file list and folder mtimes."""
    dirs = sorted({p.rsplit("/", 1)[0] for p in paths if "/" in p} | {"."})
    mtimes = [os.stat(folder / d).st_mtime_ns for d in dirs]
    listing = hashlib.sha1("\n".join(paths).encode()).hexdigest()
    return ["folder", str(folder.resolve()), listing, mtimes]


def _decode_images(files, open_file, sort_key, source, verbose):
    """Decodes image files into one uint8 `(N, H, W, 3)` array (Pillow).

    Files are read in `sort_key` order (archive position) when given.
    """
    order = range(len(files))
    if sort_key is not None:
        order = sorted(order, key=lambda i: sort_key(files[i]))
    progbar = None
    if verbose and len(files) >= 1000:
        progbar = keras.utils.Progbar(len(files), unit_name="image")
    out = None
    for count, i in enumerate(order, 1):
        try:
            with open_file(files[i]) as f, Image.open(f) as image:
                array = np.asarray(
                    image if image.mode == "RGB" else image.convert("RGB"))
        except (OSError, SyntaxError, ValueError, EOFError) as e:  # Pillow
            raise ValueError(f"{source}: cannot decode {files[i]} "
                             f"({type(e).__name__}: {e})") from None
        if out is None:
            out = np.empty((len(files),) + array.shape, np.uint8)
        elif array.shape != out.shape[1:]:
            raise ValueError(
                f"{source}: {files[i]} has shape {array.shape}, others "
                f"{out.shape[1:]}; all images must have the same size"
            )
        out[i] = array
        if progbar is not None and (count % 2000 == 0 or count == len(files)):
            progbar.update(count)
    return out
