"""Optimizers with the learning-rate schedules of the recipes."""

import keras

FINAL_LR = 1e-5  # where the Adam schedules of AutoReP, SNL and SENet end
MOMENTUM = 0.9  # SGD momentum of teachers and CryptoNAS networks


def cosine_adam_schedule(lr, steps, final_lr=FINAL_LR):
    """Learning rate cosine-decayed from ``lr`` to ``final_lr`` over
    ``steps`` (Adam in every AutoReP, SNL and SENet phase)."""
    return keras.optimizers.schedules.CosineDecay(
        lr, steps, alpha=min(1.0, final_lr / lr)
    )


def cosine_sgd(lr, steps, momentum=MOMENTUM):
    """SGD with momentum, learning rate cosine-decayed from ``lr`` to 0 over
    ``steps`` (teachers and CryptoNAS networks)."""
    schedule = keras.optimizers.schedules.CosineDecay(lr, steps)
    return keras.optimizers.SGD(schedule, momentum)
