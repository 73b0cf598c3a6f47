"""ReLU-balanced networks (CryptoNAS): every stage carries the same number of ReLUs.

A balanced network has ``stages`` stages of ``depth`` layers, each layer a
3x3 conv, BatchNormalization and one ``keras.layers.ReLU``. Stage ``s``
(0-based) works at ``H/2**s x W/2**s`` with ``width * 4**s`` channels: every
downsampling halves H and W and multiplies the channels by 4, so every layer,
hence every stage, has ``width * H * W`` ReLUs, where ``H x W`` is the
resolution of the first stage (the input divided by ``stem_stride``). For a
budget ``B`` the width is ``C = floor(B / (stages * depth * H * W))``, and the
network has ``stages * depth * C * H * W <= B`` ReLUs.
"""

import keras
from keras import layers

from keras_autorep.architectures.resnet import (
    batch_norm,
    classifier,
    conv,
    model_input,
)
from keras_autorep.budgets import parse_budget


def _first_stage_size(input_shape, stages, stem_stride):
    """``H * W`` of the first stage; checks that every stage halves evenly."""
    if stages < 1 or stem_stride < 1:
        raise ValueError(
            f"stages and stem_stride must be >= 1, got {stages}, {stem_stride}"
        )
    height, width = input_shape[0], input_shape[1]
    factor = stem_stride * 2 ** (stages - 1)
    if height % factor or width % factor:
        raise ValueError(
            f"input {height}x{width} cannot be divided by {factor} "
            f"(stem stride {stem_stride}, {stages} stages halving H and W): "
            "the stages would not carry equal ReLU counts"
        )
    return (height // stem_stride) * (width // stem_stride)


def balanced_width(budget, depth, input_shape=(32, 32, 3), stages=3,
                   stem_stride=1):
    """The first-stage width ``C = floor(B / (stages * depth * H * W))``.

    Args:
        budget: the ReLU budget (a count: ``86000``, ``"86k"``).
        depth: ReLU layers per stage.
        input_shape: ``(H, W, channels)`` of one example.
        stages: number of stages (each after the first halves H and W).
        stem_stride: stride of the linear stem conv (1: no stem).

    Raises:
        ValueError: if the budget is below ``stages * depth * H * W``, the
            smallest balanced network (one channel in the first stage).
    """
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    budget = parse_budget(budget)
    relus_per_channel = stages * depth * _first_stage_size(
        input_shape, stages, stem_stride)
    if budget < relus_per_channel:
        raise ValueError(
            f"ReLU budget {budget:,} is below {relus_per_channel:,}, the "
            f"smallest balanced network of depth {depth} ({stages} stages, "
            "1 channel in the first): lower the depth, the number of stages "
            "or raise stem_stride"
        )
    return budget // relus_per_channel


def relu_network(width, depth, input_shape=(32, 32, 3), num_classes=10,
                 stages=3, skip=True, stem_stride=1, weight_decay=0.0,
                 preprocessing=None, name="cryptonas"):
    """A balanced CryptoNAS-style network of a given first-stage width.

    Layer ``i`` of stage ``s`` is ``conv3x3 -> BN [-> add shortcut] -> ReLU``
    with ``width * 4**s`` channels, stride 2 for the first layer of stages
    after the first. With ``skip`` every layer adds a shortcut: the identity,
    or a linear 1x1 conv + BN projection where the shape changes (no ReLU in
    skip paths, as CryptoNAS's ReLU pruning prescribes). With
    ``stem_stride > 1`` a linear 3x3 conv + BN with that stride (and
    ``width`` channels) comes first. Global average pool and a ``Dense``
    layer give the logits. Every ReLU is counted: ``stages * depth * width *
    H * W`` ReLUs (``H x W`` after the stem), equal in every stage.

    Args:
        width: channels of the first stage.
        depth: ReLU layers per stage.
        input_shape: ``(H, W, channels)`` of one example.
        num_classes: number of output logits.
        stages: number of stages.
        skip: add residual shortcuts.
        stem_stride: stride of the linear stem (1: no stem).
        weight_decay: L2 factor on conv and dense kernels; 0 disables it.
        preprocessing: optional layer applied to the input first (e.g. a
            ``Normalization`` layer).
        name: model name.

    Returns:
        A functional ``keras.Model``.
    """
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    _first_stage_size(input_shape, stages, stem_stride)
    inputs, x = model_input(input_shape, preprocessing)
    if stem_stride > 1:
        x = conv(x, width, 3, stem_stride, weight_decay, "stem_conv")
        x = batch_norm(x, "stem_bn")
    for stage in range(stages):
        channels = width * 4**stage
        for index in range(depth):
            prefix = f"stage{stage + 1}_layer{index + 1}"
            strides = 2 if stage > 0 and index == 0 else 1
            shortcut = x
            x = conv(x, channels, 3, strides, weight_decay, f"{prefix}_conv")
            x = batch_norm(x, f"{prefix}_bn")
            if skip:
                if shortcut.shape[1:] != x.shape[1:]:
                    shortcut = conv(shortcut, channels, 1, strides,
                                    weight_decay, f"{prefix}_shortcut_conv")
                    shortcut = batch_norm(shortcut, f"{prefix}_shortcut_bn")
                x = layers.Add(name=f"{prefix}_add")([x, shortcut])
            x = layers.ReLU(name=f"{prefix}_relu")(x)
    outputs = classifier(x, num_classes, weight_decay)
    return keras.Model(inputs, outputs, name=name)


def balanced_network(budget, depth, input_shape=(32, 32, 3), num_classes=10,
                     stages=3, stem_stride=1, **kwargs):
    """The widest balanced network of ``depth`` layers per stage within
    ``budget``: ``relu_network(balanced_width(...), depth, ...)``.

    ``count_relus(model).total <= budget`` and every stage has the same
    number of ReLUs. ``kwargs`` go to ``relu_network`` (``skip``,
    ``weight_decay``, ``preprocessing``, ``name``).

    >>> model = balanced_network("86k", depth=2)   # widths 13, 52, 208
    >>> count_relus(model).total
    79872
    """
    width = balanced_width(budget, depth, input_shape, stages, stem_stride)
    return relu_network(width, depth, input_shape, num_classes, stages=stages,
                        stem_stride=stem_stride, **kwargs)
