"""The published image counts of the datasets known by name, and the
balance of the others.

A known dataset read from files must hold exactly these counts (before any
class selection or subset): an interrupted extraction or a damaged archive
then stops the load instead of being trained and reported on as the whole
dataset. CIFAR-100 is not listed: it comes through tensorflow-datasets,
which checks its own downloads. Any other image-folder tree whose training
classes are far out of balance (the largest at least ``IMBALANCE_RATIO``
times the smallest) gets a warning with the counts.
"""

import warnings

import numpy as np

IMBALANCE_RATIO = 2.0

# name: (classes, train images per class, test images per class); the
# Tiny-ImageNet test split is its labelled validation split.
KNOWN_COUNTS = {
    "cifar10": (10, 5_000, 1_000),
    "tiny_imagenet": (200, 500, 50),
}


def check_counts(name, source, class_names, y_train, y_test):
    """Raises ``ValueError`` if a known dataset's labels miss images.

    Args:
        name: dataset name; names not in ``KNOWN_COUNTS`` pass unchecked.
        source: folder or archive (for the message).
        class_names: all class names, in label order.
        y_train, y_test: labels of every image of each split.
    """
    if name not in KNOWN_COUNTS:
        _warn_if_unbalanced(source, class_names, y_train)
        return
    classes, *per_class = KNOWN_COUNTS[name]
    if len(class_names) != classes:
        raise ValueError(
            f"{source}: {len(class_names)} classes, {name} has {classes}: "
            "the folder or archive is incomplete or another dataset")
    for split, labels, expected in zip(("train", "test"), (y_train, y_test),
                                       per_class):
        found = np.bincount(labels, minlength=classes)
        short = np.flatnonzero(found != expected)
        if short.size:
            c = short[0]
            raise ValueError(
                f"{source}: {found[c]:,} {split} images of class "
                f"{class_names[c]!r}, {name} has {expected:,} per class "
                f"({found.sum():,} of {expected * classes:,} in the split): "
                "the folder or archive is incomplete")


def _warn_if_unbalanced(source, class_names, y_train):
    found = np.bincount(y_train, minlength=len(class_names))
    smallest, largest = int(np.argmin(found)), int(np.argmax(found))
    if found[largest] < IMBALANCE_RATIO * max(1, found[smallest]):
        return
    warnings.warn(
        f"{source}: training classes far out of balance: "
        f"{class_names[smallest]!r} has {found[smallest]:,} images, "
        f"{class_names[largest]!r} {found[largest]:,} (median "
        f"{int(np.median(found)):,}); top-1 accuracy will favour the large "
        "classes",
        stacklevel=3,
    )
