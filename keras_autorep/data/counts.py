"""The published image counts of the datasets known by name.

A known dataset read from files must hold exactly these counts (before any
class selection or subset): an interrupted extraction or a damaged archive
then stops the load instead of being trained and reported on as the whole
dataset. CIFAR-100 is not listed: it comes through tensorflow-datasets,
which checks its own downloads.
"""

import numpy as np

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
