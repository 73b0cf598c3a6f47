"""CIFAR-style ResNets (channels-last) with one named ``ReLU`` layer per ReLU.

Every ReLU is a separate, named ``keras.layers.ReLU`` layer; no other
activation is used and the final ``Dense`` layer outputs logits. Every ReLU
the model computes is counted.

BatchNormalization uses ``momentum=0.9, epsilon=1e-5``, the PyTorch defaults of
the reference code.
"""

import keras
from keras import layers

RELU_CONVENTIONS = ("snl", "senet")


def regularizer(weight_decay):
    """L2 kernel regularizer for ``weight_decay > 0``, else ``None``."""
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    return keras.regularizers.L2(weight_decay) if weight_decay > 0 else None


def conv(x, filters, kernel_size, strides, weight_decay, name):
    """Bias-free, he_normal-initialised ``same``-padded Conv2D applied to x."""
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=regularizer(weight_decay),
        name=name,
    )(x)


def batch_norm(x, name):
    """BatchNormalization with the PyTorch default momentum and epsilon."""
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)(x)


def classifier(x, num_classes, weight_decay):
    """Global average pool followed by a ``Dense`` layer producing logits."""
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return layers.Dense(
        num_classes, kernel_regularizer=regularizer(weight_decay), name="logits"
    )(x)


def _basic_block(x, filters, strides, weight_decay, name):
    """conv-bn-relu-conv-bn, add the (projected) shortcut, relu."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = conv(
            x, filters, 1, strides, weight_decay, f"{name}_shortcut_conv"
        )
        shortcut = batch_norm(shortcut, f"{name}_shortcut_bn")
    x = conv(x, filters, 3, strides, weight_decay, f"{name}_conv1")
    x = batch_norm(x, f"{name}_bn1")
    x = layers.ReLU(name=f"{name}_relu1")(x)
    x = conv(x, filters, 3, 1, weight_decay, f"{name}_conv2")
    x = batch_norm(x, f"{name}_bn2")
    x = layers.Add(name=f"{name}_add")([x, shortcut])
    return layers.ReLU(name=f"{name}_relu2")(x)


def model_input(input_shape, preprocessing):
    """``(inputs, x)``: the model's Input and, if given, ``preprocessing(inputs)``."""
    inputs = keras.Input(shape=input_shape, name="input")
    return inputs, inputs if preprocessing is None else preprocessing(inputs)


def _resnet(
    input_shape,
    num_classes,
    stem_filters,
    stages,
    stem_relu,
    weight_decay,
    preprocessing,
    name,
):
    """Stem conv-bn[-relu], stages of BasicBlocks, pool, dense.

    Args:
        stages: sequence of ``(filters, strides, num_blocks)``, one per stage.
        stem_relu: whether a ReLU follows the stem's batch norm.
    """
    inputs, x = model_input(input_shape, preprocessing)
    x = conv(x, stem_filters, 3, 1, weight_decay, "stem_conv")
    x = batch_norm(x, "stem_bn")
    if stem_relu:
        x = layers.ReLU(name="stem_relu")(x)
    for stage, (filters, strides, num_blocks) in enumerate(stages, start=1):
        for block in range(num_blocks):
            x = _basic_block(
                x,
                filters,
                strides if block == 0 else 1,
                weight_decay,
                f"stage{stage}_block{block}",
            )
    outputs = classifier(x, num_classes, weight_decay)
    return keras.Model(inputs, outputs, name=name)


def resnet18(
    input_shape=(32, 32, 3),
    num_classes=10,
    relu_convention="snl",
    weight_decay=0.0,
    preprocessing=None,
):
    """ResNet-18, CIFAR variant of SNL / AutoReP.

    3x3 stride-1 stem conv (64 channels), BN, no max-pool; four stages of
    two BasicBlocks with 64/128/256/512 channels and strides 1/2/2/2; 1x1
    conv + BN projection shortcut where the shape changes; global average
    pool; ``Dense`` logits.

    ReLU convention (which architecture, every ReLU counted either way):
        ``"snl"`` (SNL/AutoReP reference code): no stem ReLU at all (its
        forward is ``bn1(conv1(x))``, then the stages): 491,520 ReLUs at
        32x32, 1,966,080 at 64x64.
        ``"senet"``: a ReLU ``stem_relu`` after the stem: 557,056 at 32x32,
        2,228,224 at 64x64.

    Args:
        input_shape: ``(height, width, channels)`` of one example.
        num_classes: number of output logits.
        relu_convention: ``"snl"`` or ``"senet"``.
        weight_decay: L2 factor on conv and dense kernels; 0 disables it.
        preprocessing: optional layer applied to the input before the stem
            (e.g. a ``Normalization`` layer); part of the functional graph.

    Returns:
        A functional ``keras.Model`` named ``"resnet18"``.
    """
    if relu_convention not in RELU_CONVENTIONS:
        raise ValueError(
            f"Unknown relu_convention {relu_convention!r}; "
            f"expected one of {RELU_CONVENTIONS}"
        )
    stages = ((64, 1, 2), (128, 2, 2), (256, 2, 2), (512, 2, 2))
    return _resnet(
        input_shape,
        num_classes,
        64,
        stages,
        relu_convention == "senet",
        weight_decay,
        preprocessing,
        "resnet18",
    )


def resnet_small(
    input_shape=(32, 32, 3),
    num_classes=10,
    width=16,
    weight_decay=0.0,
    preprocessing=None,
):
    """Small ResNet for quick CPU runs.

    3x3 stem conv (``width`` channels), BN, ReLU; three stages of one
    BasicBlock with ``width``/``2*width``/``4*width`` channels and strides
    1/2/2; global average pool; ``Dense`` logits.

    Every ReLU is counted, stem included. With
    ``width=16``: 73,728 ReLUs at 32x32, 294,912 at 64x64 (in general
    ``4.5 * width * H * W`` for H and W divisible by 4).

    Args:
        input_shape: ``(height, width, channels)`` of one example.
        num_classes: number of output logits.
        width: channels of the stem and first stage.
        weight_decay: L2 factor on conv and dense kernels; 0 disables it.
        preprocessing: optional layer applied to the input before the stem
            (e.g. a ``Normalization`` layer); part of the functional graph.

    Returns:
        A functional ``keras.Model`` named ``"resnet_small"``.
    """
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    stages = ((width, 1, 1), (2 * width, 2, 1), (4 * width, 2, 1))
    return _resnet(
        input_shape,
        num_classes,
        width,
        stages,
        True,
        weight_decay,
        preprocessing,
        "resnet_small",
    )
