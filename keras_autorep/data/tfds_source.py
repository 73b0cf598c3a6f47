"""CIFAR through tensorflow-datasets (downloading when the network allows)."""

import socket

import numpy as np

from keras_autorep.data.cache import cache_path, read_cache, write_cache

_DOWNLOAD_HOSTS = ("storage.googleapis.com", "www.cs.toronto.edu")


class DataUnavailableError(RuntimeError):
    """The dataset cannot be obtained (no local copy, no network)."""


def no_data_message(name, reason):
    """The error text when ``name`` cannot be loaded, with what to do."""
    return (
        f"cannot load {name!r}: {reason}. Pass --data-dir PATH (load_dataset"
        f"(..., data_dir=PATH)): a folder with {{train,test}}/<class>/ images "
        f"or a .tar.gz of one (e.g. ../shared/data/cifar10-images.tar.gz)."
    )


def _network_available(timeout=3.0):
    """Whether one of the download hosts accepts a TCP connection."""
    for host in _DOWNLOAD_HOSTS:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            return True
        except OSError:
            continue
    return False


def load_tfds(name, cache_dir):
    """Full CIFAR splits from tensorflow-datasets, cached as .npz."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataUnavailableError(no_data_message(
            name, f"tensorflow_datasets is not importable ({e})")) from e
    builder = tfds.builder(name)
    prepared = builder.is_prepared()
    cache = cache_path(cache_dir, name, "tfds", str(builder.data_path))
    cached = read_cache(cache) if prepared else None
    if cached is not None:
        return cached
    if not prepared and not _network_available():
        raise DataUnavailableError(no_data_message(
            name, f"it is not in the tensorflow-datasets folder "
            f"{builder.data_dir} and the network is unreachable"))
    try:
        # Fixed-size batches rather than batch_size=-1, which batches by the
        # split size recorded in the metadata and aborts the process when
        # that is unknown (e.g. under tfds.testing.mock_data).
        datasets = tfds.load(name, split=["train", "test"],
                             as_supervised=True, batch_size=4096)
        splits = []
        for ds in datasets:
            batches = list(tfds.as_numpy(ds))
            splits.append(
                (np.concatenate([x for x, _ in batches]).astype(np.uint8),
                 np.concatenate([y for _, y in batches]).astype(np.int32)))
    except Exception as e:  # download or TensorFlow failure, reported as one
        raise DataUnavailableError(no_data_message(
            name, f"tensorflow_datasets failed: {type(e).__name__}: {e}"
        )) from e
    class_names = list(builder.info.features["label"].names)
    if builder.is_prepared():
        write_cache(cache, splits, class_names)
    return splits, class_names
