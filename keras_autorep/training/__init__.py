"""Training students: one trainer, composable loss terms, fit helpers.

* ``trainer``: ``StudentTrainer`` (and its AutoReP and distillation
  configurations ``BudgetTrainer``, ``DistillationTrainer``);
* ``losses``: the loss terms (distillation, attention transfer, budget
  hinge, mask L1, activation mismatch);
* ``fit``: ``fit_phase`` (compile with Adam + ``fit`` for one phase);
* ``schedules``: the learning-rate schedules of the recipes;
* ``callbacks``: epoch timing;
* ``checkpoints``: ``StepCheckpoint``, a fit saved at its steps and resumed
  at the step it reached;
* ``preemption``: SIGTERM and SIGINT turned into a saved step and
  ``Preempted``;
* ``forms``: ``FormSearch``, learned replacement forms chosen by the
  training objective.
"""

from keras_autorep.training.forms import FormSearch
from keras_autorep.training.losses import (
    ActivationMismatch,
    AttentionTransfer,
    BudgetHinge,
    CostHinge,
    Distillation,
    MaskL1,
    attention_map,
    attention_transfer_loss,
    distillation_loss,
)
from keras_autorep.training.trainer import (
    BudgetTrainer,
    DistillationTrainer,
    LastValue,
    StudentTrainer,
)

__all__ = [
    "ActivationMismatch",
    "AttentionTransfer",
    "BudgetHinge",
    "CostHinge",
    "BudgetTrainer",
    "Distillation",
    "DistillationTrainer",
    "FormSearch",
    "LastValue",
    "MaskL1",
    "StudentTrainer",
    "attention_map",
    "attention_transfer_loss",
    "distillation_loss",
]
