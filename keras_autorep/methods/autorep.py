"""AutoReP (Peng et al., ICCV 2023): ReLU or polynomial, chosen by gradient.

``replace_relus(teacher)`` gives every ReLU site a ``ReLUSelector``
(indicator, hysteresis mask, straight-through gradient, DaPa polynomial);
weights, indicators and coefficients then train together with Adam on
``CE + KD(T=4) + lambda * max(0, kept / N - B / N)`` (``BudgetTrainer``).

The search rarely ends on the budget: the hinge stops pushing once the
count is below it, and a short search can end above. So the masks then
*land* on the budget (``land_masks``: above it the kept positions with the
largest indicators survive, below it the removed positions with the
largest indicators come back) and are frozen, and the student is
fine-tuned with CE + KD so that every position is trained as the function
it finally computes.
"""

from keras_autorep.allocation import apply_allocation
from keras_autorep.graph import land_masks, replace_relus, set_masks
from keras_autorep.methods.method import TeacherMethod
from keras_autorep.training import BudgetTrainer, DistillationTrainer
from keras_autorep.training.fit import fit_phase
from keras_autorep.training.forms import FormSearch, learned_form_sites
from keras_autorep.training.schedules import cosine_adam_schedule


def train_autorep(
    teacher,
    budget,
    train_data,
    val_data=None,
    *,
    counts=None,
    epochs=200,
    finetune_epochs=20,
    lr=1e-3,
    finetune_lr=None,
    budget_weight=10.0,
    distillation_weight=1.0,
    temperature=4.0,
    granularity="pixel",
    replacement="poly2",
    activations=("relu",),
    selector_options=None,
    form_search_every=100,
    seed=0,
    batch_size=None,
    metrics=None,
    callbacks=None,
    verbose="auto",
):
    """Train an AutoReP student of ``teacher`` towards ``budget`` ReLUs.

    The arguments every method takes (``teacher``, ``budget``,
    ``train_data``, ``val_data``, ``batch_size``, ``metrics``,
    ``verbose``) are those of ``keras_autorep.methods``. Its own:

    Args:
        counts: optional per-site allocation ``{site: ReLUs}`` (from
            ``keras_autorep.allocation.allocate``): the masks start at it
            (random positions) and the search moves them from there.
        epochs: search epochs.
        finetune_epochs: fine-tuning epochs with the landed masks frozen
            (0: land without fine-tuning).
        lr: Adam learning rate of the search (float or schedule).
        finetune_lr: Adam learning rate of the fine-tuning (default:
            ``lr``).
        budget_weight: ``lambda`` of the budget term.
        distillation_weight: weight of KD (T = ``temperature``).
        temperature: distillation temperature.
        granularity: ``"pixel"`` or ``"channel"`` indicators.
        replacement: what removed positions compute: ``"poly2"`` (DaPa's
            quadratic), ``"poly1"`` (its line), ``"identity"``, or
            ``"auto"`` (learned per site; with a cost budget, priced).
        activations: the activations that become selectable sites
            (``replace_relus``; e.g. ``("silu",)`` for EfficientNet).
        selector_options: further ``ReLUSelector`` arguments (e.g. the
            stability options ``quadratic_decay``, ``max_quadratic``).
        form_search_every: with ``replacement="auto"``, the search steps
            between two choices of the sites' forms (``FormSearch``).
        seed: seed of the mask positions of ``counts``.
        callbacks: a list for both phases, or ``phase -> list`` with the
            phases ``"search"`` and ``"finetune"``.

    Returns:
        The student (``replace_relus(teacher)`` with trained weights and
        coefficients, masks landed on the budget and frozen);
        ``harden(student, budget)`` gives the inference model.
    """
    student = replace_relus(teacher, granularity=granularity,
                            replacement=replacement,
                            activations=activations,
                            **(selector_options or {}))
    if counts is not None:
        apply_allocation(student, counts, seed=seed)
    trainer = BudgetTrainer(
        student, budget, teacher=teacher, budget_weight=budget_weight,
        temperature=temperature, distillation_weight=distillation_weight,
    )
    fit_options = dict(callbacks=callbacks, metrics=metrics,
                       batch_size=batch_size, verbose=verbose)
    forms = ([FormSearch(train_data, form_search_every,
                         batch_size=batch_size or 32)]
             if learned_form_sites(student) else [])
    fit_phase(trainer, train_data, val_data, epochs=epochs, lr=lr,
              phase="search", extra_callbacks=forms, **fit_options)
    set_masks(student, land_masks(student, trainer.budget), freeze=True)
    finetune = DistillationTrainer(
        student, teacher, distillation_weight=distillation_weight,
        temperature=temperature,
    )
    fit_phase(finetune, train_data, val_data, epochs=finetune_epochs,
              lr=lr if finetune_lr is None else finetune_lr,
              phase="finetune", **fit_options)
    return student


class AutoReP(TeacherMethod):
    """AutoReP as a registry unit: phases ``search`` (the whole paper
    schedule) and ``finetune`` (a tenth of it by default, at a quarter of
    the search's learning rate: on the quick demo 56.65 % against 55.25 %
    at the full rate and 56.45 % at a tenth), each an Adam schedule with
    cosine decay; a DaPa-polynomial selector student of any activation."""

    name = "autorep"
    phases = ("search", "finetune")
    replacement = "poly2"
    finetune_fraction = 0.1
    finetune_lr_fraction = 0.25

    def default_finetune_epochs(self, epochs):
        return max(1, round(self.finetune_fraction * epochs))

    def student(self, teacher, activations=("relu",), replacement=None):
        return replace_relus(teacher, activations=activations,
                             replacement=replacement or self.replacement)

    def learning_rates(self, plan):
        return {
            "search": cosine_adam_schedule(plan.lr, plan.steps(plan.epochs)),
            "finetune": cosine_adam_schedule(
                plan.lr * self.finetune_lr_fraction,
                plan.steps(plan.finetune_epochs)),
        }

    def options(self, plan):
        rates = self.learning_rates(plan)
        return dict(lr=rates["search"], finetune_lr=rates["finetune"],
                    activations=plan.activations,
                    replacement=plan.replacement or self.replacement,
                    budget_weight=plan.budget_weight,
                    selector_options=plan.selector_options, seed=plan.seed)

    def record(self, plan):
        return dict(super().record(plan), budget_weight=plan.budget_weight,
                    finetune_lr=plan.lr * self.finetune_lr_fraction)

    train_function = staticmethod(train_autorep)
