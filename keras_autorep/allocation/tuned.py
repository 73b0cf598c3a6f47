"""Budget allocation tuned by keras-tuner: one weight per group of sites.

Each trial trains a student with frozen random masks at the split the
weights give (``split_budget``) for a few epochs; the objective is
``val_accuracy``.

Distributed search is keras-tuner's own chief/worker mode: every process
runs the same search with ``KERASTUNER_ORACLE_IP`` and
``KERASTUNER_ORACLE_PORT`` (the chief's address) and its own
``KERASTUNER_TUNER_ID`` (``chief``, or a worker name such as ``tuner0``).
The chief serves the oracle and runs no trial; the workers run the trials
it hands out. The chief's call returns the result, a worker's ``None``.
"""

import keras
import keras_tuner

from keras_autorep.adapters.keras_tuner_roles import tuner_role
from keras_autorep.adapters.keras_tuner_seed import tuner_seed
from keras_autorep.allocation.apply import apply_allocation
from keras_autorep.budgets import split_budget
from keras_autorep.graph import (
    copy_weights,
    count_relus,
    selector_budget,
    selectors,
    site_sizes,
)
from keras_autorep.training import DistillationTrainer
from keras_autorep.training.fit import phase_callbacks, split_data

TUNERS = {
    "random": keras_tuner.RandomSearch,
    "bayesian": keras_tuner.BayesianOptimization,  # needs scikit-learn
}


def site_groups(student, groups="stage"):
    """``{site: group}``: which sites share one tuned weight.

    Args:
        student: a model with ``ReLUSelector`` layers.
        groups: ``"stage"`` (sites with the same activation shape, named
            ``stage0, stage1, ...`` in graph order), ``"layer"`` (one group
            per site) or an explicit ``{site: group name}``.
    """
    sizes = site_sizes(student)
    if isinstance(groups, dict):
        if set(groups) != set(sizes):
            raise ValueError(
                "groups must name every selector and nothing else: "
                f"{sorted(set(groups) ^ set(sizes))} differ"
            )
        return dict(groups)
    if groups == "layer":
        return {name: name for name in sizes}
    if groups == "stage":
        stages = {}
        shapes = {s.name: s.activation_shape for s in selectors(student)}
        for name in sizes:
            stages.setdefault(shapes[name], f"stage{len(stages)}")
        return {name: stages[shapes[name]] for name in sizes}
    raise ValueError(
        f"groups must be 'stage', 'layer' or a dict, got {groups!r}"
    )


class AllocationHyperModel(keras_tuner.HyperModel):
    """Search space: one ``Float`` weight in ``[min_weight, 1]`` per group.

    A site's kept fraction is proportional to its group's weight
    (``split_budget``), so every point of the space is a split that sums
    to the budget exactly. ``build`` returns a compiled
    ``DistillationTrainer`` around a copy of the student whose masks are
    frozen at random positions at that split.

    Args:
        student: a model with ``ReLUSelector`` layers (not modified).
        budget: ReLU budget of the model (anything ``parse_budget``
            accepts).
        teacher: optional all-ReLU teacher for distillation.
        groups: see ``site_groups``.
        min_weight: lower end of every weight.
        seed: seed of the random mask positions.
        lr: Adam learning rate of the trials.
        metrics: compiled metrics (default ``["accuracy"]``).
    """

    def __init__(self, student, budget, teacher=None, groups="stage",
                 min_weight=0.05, seed=0, lr=1e-3, metrics=None):
        super().__init__(name="allocation")
        self.student = student
        self.teacher = teacher
        count = count_relus(student)
        self.sizes = site_sizes(student, count)
        self.budget = selector_budget(student, budget, count)
        self.groups = site_groups(student, groups)
        self.min_weight = float(min_weight)
        self.seed = seed
        self.lr = lr
        self.metrics = list(metrics) if metrics is not None else ["accuracy"]

    def counts(self, weights):
        """``{site: ReLUs}`` for ``{group: weight}`` (a pure function)."""
        per_site = {s: weights[group] for s, group in self.groups.items()}
        return split_budget(self.sizes, per_site, self.budget)

    def build(self, hp):
        weights = {
            group: hp.Float(group, self.min_weight, 1.0)
            for group in dict.fromkeys(self.groups.values())
        }
        model = keras.models.clone_model(self.student)
        copy_weights(self.student, model)
        apply_allocation(model, self.counts(weights), self.seed, freeze=True)
        trainer = DistillationTrainer(model, self.teacher)
        trainer.compile(
            optimizer=keras.optimizers.Adam(self.lr),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=self.metrics,
        )
        return trainer


def tune_allocation(
    student,
    budget,
    train_data,
    val_data,
    run_dir,
    *,
    teacher=None,
    max_trials=10,
    epochs=1,
    tuner="random",
    groups="stage",
    min_weight=0.05,
    seed=0,
    lr=1e-3,
    batch_size=None,
    metrics=None,
    callbacks=None,
    verbose=0,
):
    """Search the per-group split with keras-tuner; the best trial's counts.

    Trials are stored in ``run_dir/allocation`` and the tuner is built with
    ``overwrite=False``: calling again with the same ``run_dir`` resumes an
    interrupted search (finished trials are not rerun) and a larger
    ``max_trials`` only runs the missing trials.

    Args:
        student: a model with ``ReLUSelector`` layers (not modified).
        budget: ReLU budget (anything ``parse_budget`` accepts).
        train_data: training data of every trial (``fit`` forms).
        val_data: validation data; the objective is ``val_accuracy``.
        run_dir: folder of the tuner project.
        teacher: optional all-ReLU teacher for distillation.
        max_trials: total trials of the search.
        epochs: training epochs per trial.
        tuner: ``"random"`` (``RandomSearch``) or ``"bayesian"``
            (``BayesianOptimization``; needs scikit-learn).
        groups, min_weight, lr, metrics: see ``AllocationHyperModel``.
        seed: seed of the random mask positions and of the tuner's
            sampling (``tuner_seed``: 0 is a seed like any other).
        batch_size: batch size for array data.
        callbacks: list or ``phase -> list`` (phase ``"allocation"``);
            keras-tuner deep-copies them per trial, so leave out
            ``BackupAndRestore`` (the tuner resumes per trial itself).
        verbose: ``fit`` and tuner verbosity.

    Returns:
        ``{site: ReLUs}`` of the best trial; ``None`` in a keras-tuner
        worker (the chief reports the result).
    """
    if tuner not in TUNERS:
        raise ValueError(
            f"tuner must be one of {sorted(TUNERS)}, got {tuner!r}"
        )
    hypermodel = AllocationHyperModel(
        student, budget, teacher=teacher, groups=groups,
        min_weight=min_weight, seed=seed, lr=lr, metrics=metrics,
    )
    x, y = split_data(train_data)
    search = TUNERS[tuner](
        hypermodel,
        objective="val_accuracy",
        max_trials=max_trials,
        seed=tuner_seed(seed),
        directory=str(run_dir),
        project_name="allocation",
        overwrite=False,
    )
    search.search(
        x, y,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=val_data,
        callbacks=phase_callbacks(callbacks, "allocation"),
        shuffle=y is not None,
        verbose=verbose,
    )
    if tuner_role() == "worker":
        return None
    best = search.get_best_hyperparameters(1)[0]
    return hypermodel.counts(best.values)
