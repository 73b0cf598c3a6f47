"""How a ReLU budget is split across layers before (or instead of) a search.

``allocate(method, student, budget, ...)`` returns ``{site: ReLUs}`` that
sums to the selectors' share of the budget exactly, or ``None``:

* ``"free"``: no per-layer constraint (``None``); the method decides
  (AutoReP's hysteresis search, SNL's global ranking).
* ``"uniform"``: every site keeps the same fraction of its ReLUs.
* ``"sensitivity"``: fractions proportional to SENet-style ReLU
  sensitivity (``keras_autorep.allocation.sensitivity``).
* ``"tuned"``: a keras-tuner search over one weight per group of sites
  (a *stage*: sites with the same activation shape, by default); each
  trial trains a student with frozen random masks at the split for a few
  epochs, objective ``val_accuracy`` (``tune_allocation``).

``apply_allocation(student, counts, seed)`` seeds a student's masks at the
counts (random positions or the largest indicators), frozen for SNL/SENet
style training or free for AutoReP to move.
"""

from keras_autorep.allocation.apply import apply_allocation
from keras_autorep.allocation.sensitivity import (
    allocate_by_sensitivity,
    relu_sensitivity,
)
from keras_autorep.budgets import uniform_split
from keras_autorep.graph import count_relus, selector_budget, site_sizes

ALLOCATIONS = ("free", "uniform", "sensitivity", "tuned")


def allocate(
    method,
    student,
    budget,
    *,
    teacher=None,
    train_data=None,
    val_data=None,
    run_dir=None,
    sensitivity_steps=None,
    batch_size=None,
    **tune_options,
):
    """Per-site ReLU counts of an allocation method, or ``None`` (free).

    Args:
        method: one of ``ALLOCATIONS`` (see the module doc).
        student: the model to allocate for (``ReLUSelector`` layers).
        budget: ReLU budget (anything ``parse_budget`` accepts); counted
            ReLUs outside selectors come off it first.
        teacher: all-ReLU teacher: ``"sensitivity"`` linearises its ReLUs
            (else the student's own polynomial branches are used);
            ``"tuned"`` distils from it.
        train_data: ``"sensitivity"`` and ``"tuned"``: training data.
        val_data: ``"tuned"``: validation data.
        run_dir: ``"tuned"``: folder of the tuner project.
        sensitivity_steps: ``"sensitivity"``: batches of a dataset to use.
        batch_size: batch size for array data.
        **tune_options: ``"tuned"``: passed to ``tune_allocation``.

    Returns:
        ``{site: ReLUs}`` summing to the selectors' share of the budget,
        or ``None`` for ``"free"`` and in a keras-tuner worker of
        ``"tuned"`` (its chief reports the result).
    """
    if method not in ALLOCATIONS:
        raise ValueError(
            f"allocation must be one of {ALLOCATIONS}, got {method!r}"
        )
    if method == "free":
        return None
    count = count_relus(student)
    site_budget = selector_budget(student, budget, count)
    if method == "uniform":
        return uniform_split(site_sizes(student, count), site_budget)
    if train_data is None:
        raise ValueError(f"allocation {method!r} needs train_data")
    if method == "sensitivity":
        sensitivity = relu_sensitivity(
            student if teacher is None else teacher, train_data,
            steps=sensitivity_steps, batch_size=batch_size,
        )
        return allocate_by_sensitivity(
            site_sizes(student, count), sensitivity, site_budget
        )
    if val_data is None or run_dir is None:
        raise ValueError("allocation 'tuned' needs val_data and run_dir")
    from keras_autorep.allocation.tuned import tune_allocation  # keras_tuner

    return tune_allocation(
        student, budget, train_data, val_data, run_dir, teacher=teacher,
        batch_size=batch_size, **tune_options,
    )


__all__ = [
    "ALLOCATIONS",
    "allocate",
    "allocate_by_sensitivity",
    "apply_allocation",
    "relu_sensitivity",
]
