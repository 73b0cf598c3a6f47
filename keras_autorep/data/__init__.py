"""Datasets and input pipelines.

`load_dataset` returns uint8 NHWC arrays and a `DatasetInfo`;
`make_datasets` (or `make_tf_datasets` / `ImageArrayDataset`) turns them into
pipelines yielding float32 images in [0, 1]; `normalization_layer(info)` is
the model's first layer, doing the per-channel mean/std normalisation.
`load_image_streams` streams datasets too large for memory (ImageNet) from
their files as `ImageStream`s.
Importing this package does not import TensorFlow.
"""

from keras_autorep.data.batching import ImageArrayDataset
from keras_autorep.data.batching import make_datasets
from keras_autorep.data.batching import make_tf_datasets
from keras_autorep.data.batching import normalization_layer
from keras_autorep.data.sources import DataUnavailableError
from keras_autorep.data.sources import DatasetInfo
from keras_autorep.data.sources import load_dataset
from keras_autorep.data.sources import split_validation
from keras_autorep.data.streams import ImageStream
from keras_autorep.data.streams import load_image_streams

__all__ = [
    "DataUnavailableError",
    "DatasetInfo",
    "ImageArrayDataset",
    "ImageStream",
    "load_dataset",
    "load_image_streams",
    "make_datasets",
    "make_tf_datasets",
    "normalization_layer",
    "split_validation",
]
