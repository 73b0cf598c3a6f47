"""SENet (Kundu et al., ICLR 2023): sensitivity-driven ReLU linearisation.

Three stages, each a plain ``fit`` on the student
``replace_relus(teacher, replacement=replacement)``:

1. **Allocation** by ReLU sensitivity (the paper's formula is not public
   in verifiable form; ours is defined in ``relu_sensitivity``): each
   site keeps a fraction of its ReLUs proportional to its sensitivity,
   the counts summing to the budget exactly (``allocate_by_sensitivity``).
2. **Mask identification.** Start from random masks at those counts
   (frozen), train with ``0.5 CE + 0.5 KD(T=4)`` and accumulate, per
   position, the batch mean of ``|teacher map - student map|`` of the
   post-activation maps; then each site keeps its ``counts[site]``
   positions with the largest accumulated mismatch.
3. **Fine-tune** with the new masks frozen on
   ``CE + KD + attention_weight * AT`` (attention transfer on the
   post-activation maps, see ``keras_autorep.training.losses``).
"""

from keras_autorep.allocation.sensitivity import (
    allocate_by_sensitivity,
    relu_sensitivity,
)
from keras_autorep.graph import (
    check_counts,
    random_masks,
    replace_relus,
    selector_budget,
    set_masks,
    site_sizes,
    top_masks,
)
from keras_autorep.methods.method import TeacherMethod
from keras_autorep.training import ActivationMismatch, DistillationTrainer
from keras_autorep.training.fit import fit_phase


def train_senet(
    teacher,
    budget,
    train_data,
    val_data=None,
    *,
    counts=None,
    sensitivity_data=None,
    sensitivity_steps=None,
    epochs=20,
    finetune_epochs=100,
    lr=1e-3,
    distillation_weight=1.0,
    attention_weight=1.0,
    temperature=4.0,
    granularity="pixel",
    replacement="identity",
    seed=0,
    batch_size=None,
    metrics=None,
    callbacks=None,
    verbose="auto",
):
    """Train a SENet student of ``teacher`` within ``budget`` ReLUs.

    The arguments every method takes (``teacher``, ``budget``,
    ``train_data``, ``val_data``, ``batch_size``, ``metrics``,
    ``verbose``) are those of ``keras_autorep.methods``. Its own:

    Args:
        counts: per-site allocation ``{site: ReLUs}``; default: from
            ``relu_sensitivity`` and ``allocate_by_sensitivity``.
        sensitivity_data: data for the sensitivity (default
            ``train_data``); best unshuffled and unaugmented.
        sensitivity_steps: batches of it to use (default all).
        epochs: mask-identification epochs (0 keeps the random masks).
        finetune_epochs: fine-tuning epochs.
        lr: Adam learning rate of both phases (float or schedule).
        distillation_weight: KD weight in fine-tuning (identification uses
            0.5 CE + 0.5 KD).
        attention_weight: weight of the attention-transfer term in
            fine-tuning.
        temperature: distillation temperature.
        granularity: ``"pixel"`` or ``"channel"`` masks.
        replacement: what removed positions compute: ``"identity"`` (the
            paper's), or ``"poly1"`` / ``"poly2"`` (DaPa's line or
            quadratic, fitted while fine-tuning).
        seed: seed of the random initial masks.
        callbacks: a list for both phases, or ``phase -> list`` with phases
            ``"identify"`` and ``"finetune"``.

    Returns:
        The student: ``replace_relus(teacher, replacement=replacement)``
        with trained weights and frozen masks keeping ``counts`` (at most
        ``budget``) ReLUs; ``harden(student, budget)`` gives the inference
        model.
    """
    student = replace_relus(
        teacher, replacement=replacement, granularity=granularity
    )
    site_budget = selector_budget(student, budget)
    if counts is None:
        sensitivity = relu_sensitivity(
            student,
            train_data if sensitivity_data is None else sensitivity_data,
            steps=sensitivity_steps,
            batch_size=batch_size,
        )
        counts = allocate_by_sensitivity(
            site_sizes(student), sensitivity, site_budget
        )
    check_counts(student, counts, site_budget)
    fit_options = dict(
        callbacks=callbacks, metrics=metrics, batch_size=batch_size,
        verbose=verbose,
    )
    set_masks(student, random_masks(student, counts, seed), freeze=True)
    mismatch = ActivationMismatch()
    identify = DistillationTrainer(
        student, teacher, distillation_weight=0.5, temperature=temperature,
        terms=[mismatch],
    )
    history = fit_phase(
        identify, train_data, val_data, epochs=epochs, lr=lr,
        phase="identify", loss_weight=0.5, **fit_options,
    )
    if history is not None:
        masks = top_masks(student, mismatch.scores(), counts=counts)
        set_masks(student, masks, freeze=True)
    finetune = DistillationTrainer(
        student, teacher, distillation_weight=distillation_weight,
        temperature=temperature, attention_weight=attention_weight,
    )
    fit_phase(
        finetune, train_data, val_data, epochs=finetune_epochs, lr=lr,
        phase="finetune", **fit_options,
    )
    return student


class SENet(TeacherMethod):
    """SENet as a registry unit: per-layer counts first (``sensitivity``
    by default), phases ``identify`` and ``finetune`` (as long as the
    identification by default), one Adam schedule for both; ReLUs only,
    identity replacements."""

    name = "senet"
    phases = ("identify", "finetune")
    default_allocation = "sensitivity"
    needs_counts = True
    selects = ("relu",)
    train_function = staticmethod(train_senet)

    def options(self, plan):
        return dict(super().options(plan), seed=plan.seed)
