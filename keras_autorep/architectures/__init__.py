"""Built-in architectures, one named activation layer per non-linearity.

* ``resnet``: ``resnet18`` (CIFAR, SNL or SENet ReLU convention),
  ``resnet_small`` (quick CPU runs);
* ``wide_resnet``: ``wide_resnet22_8``;
* ``efficientnet``: ``efficientnet_b0``, ``efficientnet_b2`` (SiLU, from
  ``keras.applications``);
* ``cryptonas``: ReLU-balanced networks (``balanced_network``,
  ``balanced_width``, ``relu_network``);
* ``registry``: ``MODELS`` and ``get_model(name)``.
"""

from keras_autorep.architectures.cryptonas import (
    balanced_network,
    balanced_width,
    relu_network,
)
from keras_autorep.architectures.efficientnet import (
    efficientnet_b0,
    efficientnet_b2,
)
from keras_autorep.architectures.registry import (
    MODEL_ACTIVATIONS,
    MODELS,
    get_model,
)
from keras_autorep.architectures.resnet import resnet18, resnet_small
from keras_autorep.architectures.wide_resnet import wide_resnet22_8

__all__ = [
    "MODELS",
    "MODEL_ACTIVATIONS",
    "balanced_network",
    "balanced_width",
    "efficientnet_b0",
    "efficientnet_b2",
    "get_model",
    "relu_network",
    "resnet18",
    "resnet_small",
    "wide_resnet22_8",
]
