"""Selective Network Linearization (SNL; Cho et al., ICML 2022).

As in the official code (``snl_finetune_unstructured.py``):

1. **Search.** Every ReLU site gets a continuous mask ``m`` (per pixel or
   per channel, initialised to 1) and computes ``m * relu(x) + (1 - m) * x``
   (``SoftReLUMask``). Weights and masks train together with Adam on
   ``CE + KD(T=4) + lambda * ||m||_1``; a position counts as a ReLU while
   ``m > threshold`` (1e-2). After each epoch: if the count is within the
   budget the search stops; if it did not reach a new low, ``lambda`` grows
   by ``l1_growth`` (1.1). Ours keeps ``m`` in ``[0, 1]`` by projection.
2. **Binarise.** The budget's worth of positions with the largest ``m``
   stay ReLUs (over all sites, or the top ``counts[site]`` in each site when
   an allocation is given); the rest become the identity. The masks land in
   ``ReLUSelector(fit="identity", degree=1)`` layers and are frozen.
3. **Fine-tune** with CE + KD, masks frozen.

The search runs on a copy of the student whose selectors are swapped for
``SoftReLUMask`` layers; the trained weights are copied back before
binarisation. The result has exactly the layers of
``replace_relus(teacher, replacement=replacement)``, so counting,
``harden`` and export treat it like an AutoReP student.
"""

import warnings

import keras
from keras import ops

from keras_autorep.graph import (
    check_counts,
    copy_weights,
    replace_relus,
    selector_budget,
    set_masks,
    top_masks,
)
from keras_autorep.layers import ReLUSelector, SoftReLUMask
from keras_autorep.methods.method import TeacherMethod
from keras_autorep.training import DistillationTrainer, MaskL1
from keras_autorep.training.fit import fit_phase


def soft_mask_model(student, threshold=1e-2):
    """A copy of ``student`` with ``SoftReLUMask`` in place of each selector.

    Layers keep their names; every other layer's weights are copied.
    """

    def clone(layer):
        if isinstance(layer, ReLUSelector):
            return SoftReLUMask(
                granularity=layer.granularity, threshold=threshold,
                name=layer.name,
            )
        return layer.__class__.from_config(layer.get_config())

    model = keras.models.clone_model(student, clone_function=clone)
    copy_site_free_weights(student, model)
    return model


def copy_site_free_weights(source, target):
    """Copy the weights of every layer but the ReLU sites, by layer name."""
    for layer in source.layers:
        if not isinstance(layer, (ReLUSelector, SoftReLUMask)):
            copy_weights(layer, target.get_layer(layer.name))


class SNLSchedule(keras.callbacks.Callback):
    """Stops the search at the budget; raises ``lambda`` when it stalls.

    The arguments every method takes (``teacher``, ``budget``,
    ``train_data``, ``val_data``, ``batch_size``, ``metrics``,
    ``verbose``) are those of ``keras_autorep.methods``. Its own:

    Args:
        budget: the model's ReLU budget (as counted by ``relu_count``).
        l1: the search's ``MaskL1`` term, whose ``lambda`` grows.
        growth: factor on ``lambda`` after an epoch without a new lowest
            count.
    """

    def __init__(self, budget, l1, growth=1.1):
        super().__init__()
        self.budget = budget
        self.l1 = l1
        self.growth = float(growth)
        self.lowest = None

    def on_epoch_end(self, epoch, logs=None):
        kept = self.model.count()
        if kept <= self.budget:
            self.model.stop_training = True
        elif self.lowest is not None and kept >= self.lowest:
            weight = self.l1.variable
            weight.assign(weight * self.growth)
        if self.lowest is None or kept < self.lowest:
            self.lowest = kept


def train_snl(
    teacher,
    budget,
    train_data,
    val_data=None,
    *,
    counts=None,
    epochs=2000,
    finetune_epochs=100,
    lr=1e-3,
    l1_weight=1e-5,
    l1_growth=1.1,
    threshold=1e-2,
    granularity="pixel",
    replacement="identity",
    distillation_weight=1.0,
    temperature=4.0,
    batch_size=None,
    metrics=None,
    callbacks=None,
    verbose="auto",
):
    """Train an SNL student of ``teacher`` that keeps at most ``budget`` ReLUs.

    Args:
        counts: optional per-site allocation ``{site: ReLUs}`` (from
            ``keras_autorep.allocation.allocate``) used at binarisation;
            default: one ranking over all sites (SNL).
        epochs: maximum search epochs; the search stops once the count is
            within the budget (the reference allows 2000).
        finetune_epochs: fine-tuning epochs with frozen masks.
        lr: Adam learning rate of both phases (float or schedule).
        l1_weight: initial ``lambda`` on ``||m||_1`` (reference 1e-5).
        l1_growth: factor on ``lambda`` after an epoch without a new low.
        threshold: mask value above which a position counts as a ReLU.
        granularity: ``"pixel"`` or ``"channel"`` masks.
        replacement: what removed positions compute: ``"identity"`` (the
            paper's), or ``"poly1"`` / ``"poly2"`` (DaPa's line or
            quadratic, fitted while fine-tuning).
        distillation_weight: weight of KD (T = ``temperature``) in both
            phases; 0 trains on CE only.
        temperature: distillation temperature.
        callbacks: a list for both phases, or ``phase -> list`` with phases
            ``"search"`` and ``"finetune"``.

    Returns:
        The student: ``replace_relus(teacher, replacement=replacement)``
        with trained weights and frozen masks keeping at most ``budget``
        ReLUs; ``harden(student, budget)`` gives the inference model.
    """
    student = replace_relus(
        teacher, replacement=replacement, granularity=granularity
    )
    site_budget = selector_budget(student, budget)
    if counts is not None:
        check_counts(student, counts, site_budget)
    fit_options = dict(
        callbacks=callbacks, metrics=metrics, batch_size=batch_size,
        verbose=verbose,
    )
    search = soft_mask_model(student, threshold)
    l1 = MaskL1(l1_weight)
    trainer = DistillationTrainer(
        search, teacher, distillation_weight=distillation_weight,
        temperature=temperature, terms=[l1],
    )
    model_budget = site_budget + trainer.relu_counter.fixed
    if trainer.count() > model_budget:
        fit_phase(
            trainer, train_data, val_data, epochs=epochs, lr=lr,
            phase="search",
            extra_callbacks=[SNLSchedule(model_budget, l1, l1_growth)],
            **fit_options,
        )
    if trainer.count() > model_budget:
        warnings.warn(
            f"SNL search ended with {trainer.count():,} ReLUs above the "
            f"threshold, more than the budget of {model_budget:,}: "
            "binarisation keeps the largest masks only; more epochs or "
            "a larger l1_weight let the search reach the budget itself",
            stacklevel=2,
        )
    copy_site_free_weights(search, student)
    scores = {m.name: ops.convert_to_numpy(m.mask) for m in l1.masks}
    if counts is None:
        masks = top_masks(student, scores, budget=site_budget)
    else:
        masks = top_masks(student, scores, counts=counts)
    set_masks(student, masks, freeze=True)
    finetune = DistillationTrainer(
        student, teacher, distillation_weight=distillation_weight,
        temperature=temperature,
    )
    fit_phase(
        finetune, train_data, val_data, epochs=finetune_epochs, lr=lr,
        phase="finetune", **fit_options,
    )
    return student


class SNL(TeacherMethod):
    """SNL as a registry unit: phases ``search`` (until the budget is
    reached) and ``finetune`` (as long as the search by default), one Adam
    schedule for both; ReLUs only, identity replacements."""

    name = "snl"
    phases = ("search", "finetune")
    selects = ("relu",)
    train_function = staticmethod(train_snl)
