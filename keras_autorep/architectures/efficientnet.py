"""EfficientNet-B0 and -B2 (``keras.applications``), all-SiLU, taking
[0, 1] images like the other built-in models.

The Keras models expect pixel values in [0, 255] and normalise them with
their own ``Rescaling`` and ``Normalization`` layers; these builders put a
``Rescaling(255)`` in front and give that ``Normalization`` layer the
dataset's statistics (or, with ``weights``, the statistics of the weights),
so that a weights file carries everything the model needs.
"""

import keras
import numpy as np

from keras_autorep.architectures.resnet import regularizer

# Keras's input sizes of the ImageNet models.
NATIVE_SIZE = {"efficientnet_b0": 224, "efficientnet_b2": 260}


def _efficientnet(constructor, name, input_shape, num_classes, weight_decay,
                  preprocessing, weights):
    if weights is not None and preprocessing is not None:
        raise ValueError(
            "weights carry their own input normalisation: pass "
            "preprocessing=None with weights")
    inputs = keras.Input(input_shape)
    pixels = keras.layers.Rescaling(255.0, name="to_pixels")(inputs)
    model = constructor(weights=weights, input_tensor=pixels,
                        classes=num_classes, classifier_activation=None)
    if preprocessing is not None:
        _set_statistics(model, preprocessing)
    decay = regularizer(weight_decay)
    if decay is not None:
        for layer in model.layers:
            for attribute, variable in (("kernel_regularizer", "kernel"),
                                        ("depthwise_regularizer", "kernel")):
                if hasattr(layer, attribute):
                    setattr(layer, attribute, decay)
                    getattr(layer, variable).regularizer = decay
    return keras.Model(inputs, model.output, name=name)


def _set_statistics(model, preprocessing):
    """The model's own ``Normalization`` layer takes the mean and variance
    of ``preprocessing`` (a ``Normalization`` layer with fixed statistics,
    e.g. ``keras_autorep.data.normalization_layer(info)``)."""
    if not isinstance(preprocessing, keras.layers.Normalization) or (
            preprocessing.input_mean is None):
        raise ValueError(
            "EfficientNet models take preprocessing=keras.layers."
            "Normalization(mean=..., variance=...) (normalization_layer"
            f"(info)), got {preprocessing!r}")
    layer = next(layer for layer in model.layers
                 if isinstance(layer, keras.layers.Normalization))
    shape = layer.adapt_mean.shape
    layer.adapt_mean.assign(np.broadcast_to(
        np.asarray(preprocessing.input_mean, np.float32), shape))
    layer.adapt_variance.assign(np.broadcast_to(
        np.asarray(preprocessing.input_variance, np.float32), shape))
    layer.finalize_state()


def efficientnet_b0(input_shape=(224, 224, 3), num_classes=1000,
                    weight_decay=0.0, preprocessing=None, weights=None):
    """EfficientNet-B0 (SiLU; sigmoid gates in its squeeze-excitation
    blocks) for [0, 1] images; see ``efficientnet_b2``."""
    return _efficientnet(keras.applications.EfficientNetB0,
                         "efficientnet_b0", input_shape, num_classes,
                         weight_decay, preprocessing, weights)


def efficientnet_b2(input_shape=(260, 260, 3), num_classes=1000,
                    weight_decay=0.0, preprocessing=None, weights=None):
    """EfficientNet-B2, the AutoReP paper's ImageNet model, for [0, 1]
    images.

    Args:
        input_shape: ``(height, width, 3)``, at least 32x32 (260x260 is
            Keras's ImageNet size).
        num_classes: output logits.
        weight_decay: L2 factor on the conv, depthwise and dense kernels.
        preprocessing: a ``Normalization`` layer with fixed statistics
            (``normalization_layer(info)``), copied into the model's own
            normalisation; ``None`` with ``weights``.
        weights: ``None`` (random), ``"imagenet"`` (Keras's ImageNet
            weights from ``~/.keras/models/`` or downloaded; 1000 classes)
            or the path of a weights file of this architecture.

    Returns:
        A functional ``keras.Model`` named ``"efficientnet_b2"`` mapping
        [0, 1] images to logits.
    """
    return _efficientnet(keras.applications.EfficientNetB2,
                         "efficientnet_b2", input_shape, num_classes,
                         weight_decay, preprocessing, weights)
