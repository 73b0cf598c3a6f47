"""The decode cache: dataset arrays as ``.npz`` files keyed by their source."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np

CACHE_FORMAT = 1


def cache_path(cache_dir, name, *key):
    """``<cache_dir>/<name>-<digest of key>.npz``."""
    digest = hashlib.sha1(
        json.dumps([CACHE_FORMAT, name, *key]).encode()).hexdigest()
    return Path(cache_dir) / f"{name}-{digest[:16]}.npz"


def read_cache(path):
    """``(splits, class_names)`` from a cache file."""
    with np.load(path) as f:
        splits = [(f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])]
        return splits, [str(c) for c in f["class_names"]]


def write_cache(path, splits, class_names):
    """Write ``splits`` and ``class_names`` atomically to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    (x_train, y_train), (x_test, y_test) = splits
    with open(tmp, "wb") as f:
        np.savez(f, x_train=x_train, y_train=y_train, x_test=x_test,
                 y_test=y_test, class_names=np.array(class_names))
    os.replace(tmp, path)
