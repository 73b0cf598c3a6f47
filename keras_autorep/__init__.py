"""keras_autorep: train Keras models for private inference on a ReLU budget.

Public API::

    from keras_autorep import (
        ReLUSelector, PolynomialActivation, PartialReLU,   # layers
        parse_budget, count_relus,                         # budgets
        replace_relus, harden,                             # conversion
        BudgetTrainer,                                     # AutoReP training
        train_autorep, train_snl, train_senet,             # methods
        relu_sensitivity, allocate_by_sensitivity,         # SENet allocation
    )

The package, lowest layer first (imports only run downwards, checked by
import-linter): ``adapters`` -> ``backends`` (the one TF/JAX seam) ->
``budgets``, ``dapa`` -> ``layers`` -> ``graph`` ->
``training`` -> ``allocation`` -> ``methods``; ``architectures``,
``search``, ``data``; ``export`` -> ``pi`` -> ``recipes``.
"""

from keras_autorep.allocation import allocate_by_sensitivity, relu_sensitivity
from keras_autorep.budgets import parse_budget
from keras_autorep.graph import (
    ReLUCount,
    count_relus,
    final_masks,
    freeze_masks,
    harden,
    replace_relus,
    selectors,
)
from keras_autorep.layers import (
    PartialReLU,
    PolynomialActivation,
    ReLUSelector,
    SoftReLUMask,
)
from keras_autorep.methods import train_autorep, train_senet, train_snl
from keras_autorep.training import (
    BudgetTrainer,
    DistillationTrainer,
    StudentTrainer,
    distillation_loss,
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
    "StudentTrainer",
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
    "train_autorep",
    "train_senet",
    "train_snl",
]
