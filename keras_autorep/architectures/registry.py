"""The built-in models by name (``--model`` of the recipes)."""

from keras_autorep.architectures.efficientnet import (
    efficientnet_b0,
    efficientnet_b2,
)
from keras_autorep.architectures.resnet import resnet18, resnet_small
from keras_autorep.architectures.wide_resnet import wide_resnet22_8

MODELS = {
    "resnet18": resnet18,
    "wide_resnet22_8": wide_resnet22_8,
    "resnet_small": resnet_small,
    "efficientnet_b0": efficientnet_b0,
    "efficientnet_b2": efficientnet_b2,
}
# The activation every model is built with: the sites the recipes select.
MODEL_ACTIVATIONS = {"efficientnet_b0": "silu", "efficientnet_b2": "silu"}


def get_model(name, **kwargs):
    """Build a registered model.

    Args:
        name: a key of ``MODELS``.
        **kwargs: passed to the builder (``input_shape``, ``num_classes``, ...).

    Returns:
        The built ``keras.Model``.
    """
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; valid names: {sorted(MODELS)}")
    return MODELS[name](**kwargs)
