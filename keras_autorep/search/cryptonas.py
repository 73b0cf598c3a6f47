"""CryptoNAS architecture search under a ReLU budget, with keras-tuner.

The space (``CryptoNASHyperModel``): ``depth`` (ReLU layers per stage),
``width_multiplier`` (scales the balanced width of that depth,
``width = max(1, floor(m * balanced_width))``) and ``skip`` (residual
shortcuts). A candidate is built symbolically and its ReLUs counted before
anything else; one over the budget raises ``OverBudgetError`` (a
``keras_tuner.errors.FailedTrialError``), so keras-tuner marks the trial
``FAILED`` and never trains it. Rejected trials still count towards
``max_trials`` (they cost no training).
"""

import importlib.util
import math

import keras
import keras_tuner

from keras_autorep.adapters.keras_tuner_quiet import tracebacks_off
from keras_autorep.adapters.keras_tuner_seed import tuner_seed
from keras_autorep.architectures.cryptonas import balanced_width, relu_network
from keras_autorep.budgets import parse_budget
from keras_autorep.graph import count_relus

OBJECTIVE = "val_accuracy"


class OverBudgetError(keras_tuner.errors.FailedTrialError):
    """A candidate architecture needs more ReLUs than the budget."""


class CryptoNASHyperModel(keras_tuner.HyperModel):
    """Balanced networks over depth, width multiplier and skip connections.

    Args:
        budget: the ReLU budget (a count such as ``86000`` or ``"86k"``).
        input_shape: ``(H, W, channels)`` of one example.
        num_classes: number of output logits.
        depths: candidate ReLU layers per stage.
        width_multipliers: candidate factors on the balanced width; factors
            above 1 mostly exceed the budget and are rejected untrained.
        stages: stages of the networks (see ``relu_network``).
        stem_stride: stride of the linear stem (1: none).
        weight_decay: L2 factor on kernels.
        preprocessing: optional zero-argument callable returning a fresh
            layer applied to the input (e.g. ``lambda:
            normalization_layer(info)``).
        optimizer: zero-argument callable returning a fresh optimizer
            (default Adam, learning rate 1e-3).

    Raises:
        ValueError: if not even the smallest candidate fits the budget.
    """

    def __init__(self, budget, input_shape=(32, 32, 3), num_classes=10,
                 depths=(1, 2, 3), width_multipliers=(0.5, 0.75, 1.0, 1.25),
                 stages=3, stem_stride=1, weight_decay=0.0,
                 preprocessing=None, optimizer=None):
        super().__init__(name="cryptonas")
        self.budget = parse_budget(budget)
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.depths = sorted(depths)
        self.width_multipliers = sorted(width_multipliers)
        self.stages = stages
        self.stem_stride = stem_stride
        self.weight_decay = weight_decay
        self.preprocessing = preprocessing
        self.optimizer = optimizer or (lambda: keras.optimizers.Adam(1e-3))
        # The defaults (smallest depth and multiplier) are the candidate
        # that fits most easily: keras-tuner builds it when it starts.
        balanced_width(self.budget, self.depths[0], self.input_shape,
                       stages, stem_stride)

    def architecture(self, hp):
        """``relu_network`` arguments of the candidate ``hp`` describes.

        Raises:
            OverBudgetError: the depth does not fit the budget at all.
        """
        depth = hp.Choice("depth", self.depths)
        multiplier = hp.Choice("width_multiplier", self.width_multipliers,
                               default=self.width_multipliers[0])
        skip = hp.Boolean("skip", default=True)
        try:
            base = balanced_width(self.budget, depth, self.input_shape,
                                  self.stages, self.stem_stride)
        except ValueError as e:
            raise OverBudgetError(str(e)) from None
        width = max(1, math.floor(multiplier * base))
        return dict(width=width, depth=depth, skip=skip)

    def network(self, hp):
        """The uncompiled candidate network."""
        preprocessing = self.preprocessing() if self.preprocessing else None
        return relu_network(
            **self.architecture(hp), input_shape=self.input_shape,
            num_classes=self.num_classes, stages=self.stages,
            stem_stride=self.stem_stride, weight_decay=self.weight_decay,
            preprocessing=preprocessing)

    def build(self, hp):
        """The compiled candidate; raises ``OverBudgetError`` over budget."""
        model = self.network(hp)
        relus = count_relus(model).total
        if relus > self.budget:
            raise OverBudgetError(
                f"candidate {self.architecture(hp)} has {relus:,} ReLUs, over "
                f"the budget of {self.budget:,}: rejected before training")
        model.compile(
            optimizer=self.optimizer(),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"])
        return model


class CryptoNASSearch(keras_tuner.RandomSearch):
    """``RandomSearch`` that prints one line per trial and runs without the
    ``tensorboard`` package.

    keras-tuner 1.4.8 imports tensorboard in every trial under TensorFlow
    (only needed for ``TensorBoard`` callbacks) and prints a traceback for
    every failed trial, rejected candidates included; here the import is
    skipped when tensorboard is missing and failures are reported by
    ``on_trial_end`` (the full message stays in the trial's ``trial.json``).
    """

    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        if importlib.util.find_spec("tensorboard") is not None:
            super()._configure_tensorboard_dir(callbacks, trial, execution)

    def search(self, *fit_args, **fit_kwargs):
        with tracebacks_off():
            super().search(*fit_args, **fit_kwargs)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        print(format_trial(trial_summary(self, trial)), flush=True)


def make_tuner(hypermodel, directory, project_name="cryptonas", max_trials=10,
               seed=0, **kwargs):
    """A resumable ``CryptoNASSearch`` (random search) on ``val_accuracy``.

    Trials live in ``directory/project_name``; with ``overwrite=False`` a
    rerun reloads them and continues up to ``max_trials``. Rejected
    (over-budget) trials never stop the search.

    Args:
        hypermodel: a ``CryptoNASHyperModel``.
        directory: the run folder for the trials.
        project_name: sub-folder name.
        max_trials: candidates to examine, rejected ones included.
        seed: seed of the candidate sampling.
        **kwargs: passed to ``keras_tuner.RandomSearch``.
    """
    return CryptoNASSearch(
        hypermodel,
        objective=OBJECTIVE,
        max_trials=max_trials,
        seed=tuner_seed(seed),
        directory=str(directory),
        project_name=project_name,
        overwrite=False,
        max_consecutive_failed_trials=max_trials + 1,
        **kwargs,
    )


def trial_summary(tuner, trial):
    """A trial as a dict: ``trial_id``, ``status``, ``values``,
    ``val_accuracy`` (best epoch; ``None`` unless completed), ``relus``
    (``None`` if the depth cannot fit), ``rejected`` (over the budget) and
    ``message`` (why it failed)."""
    trial = tuner.oracle.get_trial(trial.trial_id)
    try:
        relus = count_relus(tuner.hypermodel.network(
            trial.hyperparameters)).total
    except OverBudgetError:
        relus = None
    message = (trial.message or "").strip().splitlines()
    return dict(
        trial_id=trial.trial_id,
        status=trial.status,
        values=dict(trial.hyperparameters.values),
        val_accuracy=None if trial.score is None else float(trial.score),
        relus=relus,
        rejected=relus is None or relus > tuner.hypermodel.budget,
        message=message[-1] if message else None,
    )


def trial_summaries(tuner):
    """``trial_summary`` of every trial of ``tuner``, in order."""
    return [trial_summary(tuner, trial)
            for trial in tuner.oracle.trials.values()]


def format_trial(summary):
    """One line describing a trial summary."""
    values = summary["values"]
    text = (f"trial {summary['trial_id']}: depth {values['depth']}, width "
            f"x{values['width_multiplier']:g}, skip {values['skip']}, "
            f"{summary['relus'] or 0:,} ReLUs: ")
    if summary["status"] == "COMPLETED":
        return text + f"val_accuracy {summary['val_accuracy']:.4f}"
    if summary["rejected"]:
        return text + "over the budget, rejected before training"
    return text + f"{summary['status'].lower()} ({summary['message']})"
