"""SENet (Kundu et al., ICLR 2023): sensitivity-driven ReLU linearisation.

Three stages, each a plain ``fit`` on the student
``replace_relus(teacher, fit="identity", degree=1)``:

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
   post-activation maps, see ``keras_autorep.methods.distill``).
"""

import keras
import numpy as np
from keras import ops

from keras_autorep.budget_split import split_budget
from keras_autorep.conversion import replace_relus, selectors
from keras_autorep.methods.distill import (
    DistillationTrainer,
    fit_phase,
    split_data,
)
from keras_autorep.methods.masks import (
    check_counts,
    current_masks,
    random_masks,
    selector_budget,
    set_masks,
    site_sizes,
    top_masks,
)


def _materialise(data, steps):
    """The first ``steps`` batches (all when ``None``) of a dataset as
    ``(x, y)`` arrays, so that every evaluation sees the same examples."""
    xs, ys = [], []
    for index, batch in enumerate(data):
        if steps is not None and index >= steps:
            break
        xs.append(np.asarray(batch[0]))
        ys.append(np.asarray(batch[1]))
    return np.concatenate(xs), np.concatenate(ys)


def relu_sensitivity(model, data, *, steps=None, batch_size=None):
    """Per-site ReLU sensitivity: the loss increase from linearising a site.

    For each ReLU site ``l``: ``raw_l = max(0, L_l - L_0)`` where ``L_0`` is
    the mean cross-entropy of the model with every site a ReLU and ``L_l``
    the same with site ``l`` alone replaced by its cheap branch (the
    identity for an all-ReLU model; a selector model's own polynomial
    otherwise). Scores are ``raw_l / sum(raw)`` (all zeros if no site
    matters). A site whose inputs are never negative scores exactly 0.
    The model is evaluated in inference mode and left unchanged.

    Args:
        model: an all-ReLU model (its ReLUs are linearised, as in SNL and
            SENet) or a model with ``ReLUSelector`` layers.
        data: ``(x, y)`` arrays, a ``tf.data.Dataset`` or a ``PyDataset``
            of ``(x, y)`` batches with integer labels.
        steps: use only the first ``steps`` batches of a dataset (the same
            ones for every site); ``None`` uses all of it.
        batch_size: evaluation batch size for array data.

    Returns:
        ``{site name: score}``; site names are those ``replace_relus``
        gives, so they match the student's selectors.
    """
    probe_model = (
        model if selectors(model)
        else replace_relus(model, fit="identity", degree=1)
    )
    sites = selectors(probe_model)
    probe = keras.Model(probe_model.inputs, probe_model.outputs)
    probe.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x, y = (
        split_data(data) if isinstance(data, (tuple, list))
        else _materialise(data, steps)
    )
    saved = current_masks(probe_model)

    def loss_with_linear(linear_site):
        for site in sites:
            site.mask.assign(
                ops.full(site.mask.shape, float(site is not linear_site))
            )
        logs = probe.evaluate(
            x, y, batch_size=batch_size, verbose=0, return_dict=True
        )
        return logs["loss"]

    try:
        base = loss_with_linear(None)
        raw = {s.name: max(0.0, loss_with_linear(s) - base) for s in sites}
    finally:
        for site in sites:
            site.mask.assign(saved[site.name].astype(site.mask.dtype))
    total = sum(raw.values())
    return {name: value / total if total else 0.0
            for name, value in raw.items()}


def allocate_by_sensitivity(sizes, sensitivities, budget):
    """Per-site ReLU counts from sensitivities, summing to ``budget``.

    Each site keeps a fraction of its ReLUs proportional to its
    sensitivity (``min(1, c * s_l)``; see ``keras_autorep.budget_split``),
    so more sensitive sites keep a larger fraction; zero-sensitivity sites
    keep ReLUs only once every sensitive site is full. With no sensitivity
    anywhere the split is uniform.

    Args:
        sizes: ``{site: ReLUs}``.
        sensitivities: ``{site: score >= 0}`` (``relu_sensitivity``).
        budget: ReLUs to keep over these sites (int).

    Returns:
        ``{site: count}`` with ``0 <= count <= size``, summing to
        ``budget``.
    """
    return split_budget(sizes, sensitivities, budget)


class MismatchTrainer(DistillationTrainer):
    """``DistillationTrainer`` that accumulates per-position mismatch.

    On every training step it adds, per site and position of the indicator
    (per channel: averaged over space), the batch mean of
    ``|teacher map - student map|`` to a non-trainable variable.

    Args:
        student: selector model (masks frozen by the caller).
        teacher: the all-ReLU teacher.
        **kwargs: passed to ``DistillationTrainer``.
    """

    def __init__(self, student, teacher, **kwargs):
        super().__init__(student, teacher, with_activations=True, **kwargs)
        self.mismatch = [
            self.add_weight(
                name=f"mismatch_{site.name}",
                shape=tuple(site.mask.shape),
                initializer="zeros",
                trainable=False,
            )
            for site in self.sites
        ]

    def observe_activations(self, teacher_activations, student_activations):
        for variable, site, t, s in zip(
            self.mismatch, self.sites, teacher_activations, student_activations
        ):
            if site.granularity == "channel":
                axes = tuple(range(len(t.shape) - 1))
            else:
                axes = (0,)
            difference = ops.abs(
                ops.cast(t, "float32") - ops.cast(s, "float32")
            )
            variable.assign(variable + ops.mean(difference, axis=axes))

    def scores(self):
        """``{site: accumulated mismatch}`` as NumPy arrays."""
        return {
            site.name: ops.convert_to_numpy(variable)
            for site, variable in zip(self.sites, self.mismatch)
        }


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
    seed=0,
    batch_size=None,
    metrics=None,
    callbacks=None,
    verbose="auto",
):
    """Train a SENet student of ``teacher`` within ``budget`` ReLUs.

    Args:
        teacher: trained all-ReLU Sequential or functional model (logits);
            it is not modified (only frozen).
        budget: ReLU budget (anything ``parse_budget`` accepts).
        train_data: ``tf.data.Dataset``, ``PyDataset`` or ``(x, y)`` arrays
            (integer labels).
        val_data: optional validation data, same forms.
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
        seed: seed of the random initial masks.
        batch_size: batch size for array data.
        metrics: compiled metrics (default ``["accuracy"]``).
        callbacks: a list for both phases, or ``phase -> list`` with phases
            ``"identify"`` and ``"finetune"``.
        verbose: ``fit`` verbosity.

    Returns:
        The student: ``replace_relus(teacher, fit="identity", degree=1)``
        with trained weights and frozen masks keeping ``counts`` (at most
        ``budget``) ReLUs; ``harden(student, budget)`` gives the inference
        model.
    """
    student = replace_relus(
        teacher, fit="identity", degree=1, granularity=granularity
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
    identify = MismatchTrainer(
        student, teacher, distillation_weight=0.5, temperature=temperature
    )
    history = fit_phase(
        identify, train_data, val_data, epochs=epochs, lr=lr,
        phase="identify", loss_weight=0.5, **fit_options,
    )
    if history is not None:
        masks = top_masks(student, identify.scores(), counts=counts)
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
