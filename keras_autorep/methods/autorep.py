"""AutoReP (Peng et al., ICCV 2023): ReLU or polynomial, chosen by gradient.

``replace_relus(teacher)`` gives every ReLU site a ``ReLUSelector``
(indicator, hysteresis mask, straight-through gradient, DaPa polynomial);
weights, indicators and coefficients then train together with Adam on
``CE + KD(T=4) + lambda * max(0, kept / N - B / N)`` (``BudgetTrainer``).
The mask search is the whole run; ``harden(student, budget)`` then keeps at
most the budget.
"""

from keras_autorep.allocation import apply_allocation
from keras_autorep.graph import replace_relus
from keras_autorep.training import BudgetTrainer
from keras_autorep.training.fit import fit_phase


def train_autorep(
    teacher,
    budget,
    train_data,
    val_data=None,
    *,
    counts=None,
    epochs=200,
    lr=1e-3,
    budget_weight=10.0,
    distillation_weight=1.0,
    temperature=4.0,
    granularity="pixel",
    seed=0,
    batch_size=None,
    metrics=None,
    callbacks=None,
    verbose="auto",
):
    """Train an AutoReP student of ``teacher`` towards ``budget`` ReLUs.

    Args:
        teacher: trained all-ReLU Sequential or functional model (logits);
            it is not modified.
        budget: ReLU budget (anything ``parse_budget`` accepts).
        train_data: ``tf.data.Dataset``, ``PyDataset`` or ``(x, y)`` arrays
            (integer labels).
        val_data: optional validation data, same forms.
        counts: optional per-site allocation ``{site: ReLUs}`` (from
            ``keras_autorep.allocation.allocate``): the masks start at it
            (random positions) and the search moves them from there.
        epochs: search epochs.
        lr: Adam learning rate (float or schedule).
        budget_weight: ``lambda`` of the budget term.
        distillation_weight: weight of KD (T = ``temperature``).
        temperature: distillation temperature.
        granularity: ``"pixel"`` or ``"channel"`` indicators.
        seed: seed of the mask positions of ``counts``.
        batch_size: batch size for array data.
        metrics: compiled metrics (default ``["accuracy"]``).
        callbacks: a list, or ``phase -> list`` with the phase
            ``"search"``.
        verbose: ``fit`` verbosity.

    Returns:
        The student (``replace_relus(teacher)`` with trained weights,
        indicators, masks and coefficients); ``harden(student, budget)``
        gives the inference model.
    """
    student = replace_relus(teacher, granularity=granularity)
    if counts is not None:
        apply_allocation(student, counts, seed=seed)
    trainer = BudgetTrainer(
        student, budget, teacher=teacher, budget_weight=budget_weight,
        temperature=temperature, distillation_weight=distillation_weight,
    )
    fit_phase(
        trainer, train_data, val_data, epochs=epochs, lr=lr, phase="search",
        callbacks=callbacks, metrics=metrics, batch_size=batch_size,
        verbose=verbose,
    )
    return student
