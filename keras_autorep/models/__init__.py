"""Built-in Keras models with one named ``ReLU`` layer per ReLU."""

from keras_autorep.models.resnet import resnet18, resnet_small
from keras_autorep.models.wide_resnet import wide_resnet22_8

MODELS = {
    "resnet18": resnet18,
    "wide_resnet22_8": wide_resnet22_8,
    "resnet_small": resnet_small,
}


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


__all__ = ["MODELS", "get_model", "resnet18", "resnet_small", "wide_resnet22_8"]
