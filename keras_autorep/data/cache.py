"""The decode cache: dataset arrays as ``.npz`` files keyed by their source.

A cache file is only written from a source that was read and checked in full
(archives to their end, known datasets against their counts), so a hit needs
only cheap checks: the file reads back (zip CRCs) and its arrays agree with
each other. A file that fails them is ignored and decoded again.
"""

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

# 2: written only after the source was checked in full (see module doc).
CACHE_FORMAT = 2


def cache_path(cache_dir, name, *key):
    """``<cache_dir>/<name>-<digest of key>.npz``."""
    digest = hashlib.sha1(
        json.dumps([CACHE_FORMAT, name, *key]).encode()).hexdigest()
    return Path(cache_dir) / f"{name}-{digest[:16]}.npz"


def read_cache(path):
    """``(splits, class_names)`` from a cache file; ``None`` when there is
    none, or it is damaged or inconsistent."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as f:
            splits = [(f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])]
            class_names = [str(c) for c in f["class_names"]]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    for x, y in splits:
        if (x.dtype != np.uint8 or y.dtype != np.int32 or x.ndim != 4
                or len(x) != len(y) or len(y) == 0
                or x.shape[1:] != splits[0][0].shape[1:]
                or y.min() < 0 or y.max() >= len(class_names)):
            return None
    return splits, class_names


def write_cache(path, splits, class_names):
    """Write ``splits`` and ``class_names`` atomically to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    (x_train, y_train), (x_test, y_test) = splits
    with open(tmp, "wb") as f:
        np.savez(f, x_train=x_train, y_train=y_train, x_test=x_test,
                 y_test=y_test, class_names=np.array(class_names))
    os.replace(tmp, path)


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file beside it
    (``<name>.tmp-<pid>``), so that it is never half-written."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
