"""keras_autorep: train Keras models for private inference on a ReLU budget.

Public API::

    from keras_autorep import (
        ReLUSelector, PolynomialActivation, PartialReLU,   # layers
        parse_budget, count_relus,                         # budgets
        replace_relus, harden,                             # conversion
        BudgetTrainer,                                     # AutoReP training
        train_snl, train_senet, DistillationTrainer,       # peers
        relu_sensitivity, allocate_by_sensitivity,         # SENet allocation
    )

Sub-packages: ``keras_autorep.allocation`` (uniform / sensitivity /
keras-tuner budget splits), ``keras_autorep.models``, ``keras_autorep.data``,
``keras_autorep.export``, ``keras_autorep.pi``, ``keras_autorep.cryptonas``.
"""

from keras_autorep.budget import parse_budget
from keras_autorep.conversion import final_masks, harden, replace_relus, selectors
from keras_autorep.counting import ReLUCount, count_relus
from keras_autorep.layers import (
    PartialReLU,
    PolynomialActivation,
    ReLUSelector,
    SoftReLUMask,
)
from keras_autorep.training import BudgetTrainer, distillation_loss
from keras_autorep.methods import (
    DistillationTrainer,
    allocate_by_sensitivity,
    freeze_masks,
    relu_sensitivity,
    train_senet,
    train_snl,
)

__version__ = "0.1.0"

__all__ = [
    "BudgetTrainer",
    "DistillationTrainer",
    "PartialReLU",
    "PolynomialActivation",
    "ReLUCount",
    "ReLUSelector",
    "SoftReLUMask",
    "allocate_by_sensitivity",
    "count_relus",
    "distillation_loss",
    "final_masks",
    "freeze_masks",
    "harden",
    "parse_budget",
    "relu_sensitivity",
    "replace_relus",
    "selectors",
    "train_senet",
    "train_snl",
]
