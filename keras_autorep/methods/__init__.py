"""AutoReP's peers on the same counting, hardening and export: SNL, SENet.

Both return a ``replace_relus(teacher, fit="identity", degree=1)`` student
with frozen masks, so ``harden(student, budget)`` works as for AutoReP.
The mask helpers (``freeze_masks``, ``set_masks``, ``top_masks``, ...) are
shared with ``keras_autorep.allocation``.
"""

from keras_autorep.methods.distill import (
    DistillationTrainer,
    attention_map,
    attention_transfer_loss,
)
from keras_autorep.methods.masks import (
    current_masks,
    freeze_masks,
    random_masks,
    selector_budget,
    set_masks,
    site_sizes,
    top_masks,
)
from keras_autorep.methods.senet import (
    allocate_by_sensitivity,
    relu_sensitivity,
    train_senet,
)
from keras_autorep.methods.snl import train_snl

__all__ = [
    "DistillationTrainer",
    "allocate_by_sensitivity",
    "attention_map",
    "attention_transfer_loss",
    "current_masks",
    "freeze_masks",
    "random_masks",
    "relu_sensitivity",
    "selector_budget",
    "set_masks",
    "site_sizes",
    "top_masks",
    "train_senet",
    "train_snl",
]
