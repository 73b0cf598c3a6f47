"""The allocation stage of the AutoReP / SNL / SENet recipe (``--allocation``):
a per-layer split of the budget before the search, kept in
``<run folder>/allocation.json``. In a keras-tuner worker of
``--allocation tuned`` it is the whole run (``search_worker``).
"""

import time

from keras_autorep.allocation import allocate
from keras_autorep.recipes.presets import (
    SENSITIVITY_STEPS,
    VALIDATION_FRACTION,
)
from keras_autorep.recipes.run_folder import read_record, write_json
from keras_autorep.recipes.teacher import teacher_stage


def allocate_stage(recipe, teacher):
    """``--allocation``: ``{"method", "counts": {site: ReLUs},
    "wall_seconds"}`` (kept in ``<run folder>/allocation.json``), or
    ``None`` for ``free``."""
    run, s = recipe.run, recipe.run.settings
    if s.allocation == "free":
        return None
    path = run.folder.path / "allocation.json"
    allocation = read_record(path)
    if allocation is not None:
        return allocation
    start = time.perf_counter()
    counts = _allocate(recipe, teacher)
    allocation = dict(method=s.allocation,
                      counts={site: int(n) for site, n in counts.items()},
                      wall_seconds=time.perf_counter() - start)
    write_json(path, allocation)
    return allocation


def _allocate(recipe, teacher):
    """``allocate`` with the run's options: ``{site: ReLUs}``, or ``None``
    in a keras-tuner worker."""
    run, s = recipe.run, recipe.run.settings
    print(f"Allocation: {s.allocation} split of {recipe.budget:,} ReLUs "
          "across layers", flush=True)
    student = recipe.method.student(teacher, s.activations)
    options = {}
    if s.allocation == "sensitivity":
        options = dict(train_data=run.datasets()[0],
                       sensitivity_steps=SENSITIVITY_STEPS)
    elif s.allocation == "tuned":
        train_ds, val_ds = run.datasets(*run.holdout(VALIDATION_FRACTION))
        options = dict(train_data=train_ds, val_data=val_ds,
                       run_dir=run.folder.path, max_trials=s.tuner_trials,
                       epochs=1, lr=s.lr, seed=s.seed, verbose=run.verbose())
    return allocate(s.allocation, student, recipe.budget, teacher=teacher,
                    **options)


def search_worker(recipe):
    """A keras-tuner worker's share of ``--allocation tuned``: the teacher
    (from the shared cache, or trained while the others wait), then the
    trials its chief hands out; the chief finishes the run."""
    teacher, _ = teacher_stage(recipe)
    _allocate(recipe, teacher)
