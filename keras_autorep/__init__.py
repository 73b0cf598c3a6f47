"""keras_autorep: train Keras models for private inference on a ReLU budget.

Public API::

    from keras_autorep import (
        ReLUSelector, PolynomialActivation, PartialReLU,   # layers
        parse_budget, count_relus,                         # budgets
        replace_relus, harden,                             # conversion
        BudgetTrainer,                                     # training
    )
"""

from keras_autorep.budget import parse_budget
from keras_autorep.conversion import final_masks, harden, replace_relus, selectors
from keras_autorep.counting import ReLUCount, count_relus
from keras_autorep.layers import PartialReLU, PolynomialActivation, ReLUSelector
from keras_autorep.training import BudgetTrainer, distillation_loss

__version__ = "0.1.0"

__all__ = [
    "BudgetTrainer",
    "PartialReLU",
    "PolynomialActivation",
    "ReLUCount",
    "ReLUSelector",
    "count_relus",
    "distillation_loss",
    "final_masks",
    "harden",
    "parse_budget",
    "replace_relus",
    "selectors",
]
