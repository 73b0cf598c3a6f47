"""Pre-activation WideResNet-22-8 (channels-last), one named ``ReLU`` per ReLU."""

import keras
from keras import layers

from keras_autorep.architectures.resnet import (
    batch_norm,
    classifier,
    conv,
    model_input,
)


def _preact_block(x, filters, strides, weight_decay, name):
    """BN-ReLU-conv3x3(strides)-BN-ReLU-conv3x3, plus the shortcut.

    Where the shape changes the shortcut is a 1x1 conv of the pre-activated
    input; otherwise it is the raw input.
    """
    preact = batch_norm(x, f"{name}_bn1")
    preact = layers.ReLU(name=f"{name}_relu1")(preact)
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = conv(
            preact, filters, 1, strides, weight_decay, f"{name}_shortcut_conv"
        )
    y = conv(preact, filters, 3, strides, weight_decay, f"{name}_conv1")
    y = batch_norm(y, f"{name}_bn2")
    y = layers.ReLU(name=f"{name}_relu2")(y)
    y = conv(y, filters, 3, 1, weight_decay, f"{name}_conv2")
    return layers.Add(name=f"{name}_add")([y, shortcut])


def wide_resnet22_8(
    input_shape=(32, 32, 3), num_classes=10, weight_decay=0.0, preprocessing=None
):
    """Pre-activation WideResNet-22-8.

    3x3 stem conv (16 channels), then three groups of three pre-activation
    blocks with 128/256/512 channels and strides 1/2/2. As in the reference
    code the final BN-ReLU is not executed: the head is the final BN
    (``final_bn``, linear), global average pool and ``Dense`` logits.

    Every ReLU is counted: 1,359,872 ReLUs at 32x32, 5,439,488 at 64x64. Per group at 32x32:
    16*32*32 + 5*128*32*32, 128*32*32 + 5*256*16*16, 256*16*16 + 5*512*8*8.

    Args:
        input_shape: ``(height, width, channels)`` of one example.
        num_classes: number of output logits.
        weight_decay: L2 factor on conv and dense kernels; 0 disables it.
        preprocessing: optional layer applied to the input before the stem
            (e.g. a ``Normalization`` layer); part of the functional graph.

    Returns:
        A functional ``keras.Model`` named ``"wide_resnet22_8"``.
    """
    blocks_per_group, widen = 3, 8
    inputs, x = model_input(input_shape, preprocessing)
    x = conv(x, 16, 3, 1, weight_decay, "stem_conv")
    for group, (filters, strides) in enumerate(
        ((16 * widen, 1), (32 * widen, 2), (64 * widen, 2)), start=1
    ):
        for block in range(blocks_per_group):
            x = _preact_block(
                x,
                filters,
                strides if block == 0 else 1,
                weight_decay,
                f"group{group}_block{block}",
            )
    x = batch_norm(x, "final_bn")
    outputs = classifier(x, num_classes, weight_decay)
    return keras.Model(inputs, outputs, name="wide_resnet22_8")
