"""Datasets and input pipelines.

`load_dataset` returns uint8 NHWC arrays and a `DatasetInfo`;
`make_datasets` (or `make_tf_datasets` / `ImageArrayDataset`) turns them into
pipelines yielding float32 images in [0, 1]; `normalization_layer(info)` is
the model's first layer, doing the per-channel mean/std normalisation.
Importing this package does not import TensorFlow.
"""

from keras_autorep.data.batching import ImageArrayDataset
from keras_autorep.data.batching import make_datasets
from keras_autorep.data.batching import make_tf_datasets
from keras_autorep.data.batching import normalization_layer
from keras_autorep.data.sources import DataUnavailableError
from keras_autorep.data.sources import DatasetInfo
from keras_autorep.data.sources import load_dataset

__all__ = [
    "DataUnavailableError",
    "DatasetInfo",
    "ImageArrayDataset",
    "load_dataset",
    "make_datasets",
    "make_tf_datasets",
    "normalization_layer",
]
