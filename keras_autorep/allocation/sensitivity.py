"""ReLU sensitivity and the per-site counts it implies (SENet).

The SENet paper's formula is not public in verifiable form; ours:
``raw_l = max(0, L_l - L_0)`` where ``L_0`` is the mean cross-entropy of the
model with every site a ReLU and ``L_l`` the same with site ``l`` alone
linearised; ``sensitivity_l = raw_l / sum(raw)``. Each site then keeps a
fraction of its ReLUs proportional to its sensitivity, the counts summing
to the budget exactly.
"""

import keras
import numpy as np
from keras import ops

from keras_autorep.budgets import split_budget
from keras_autorep.graph import current_masks, replace_relus, selectors
from keras_autorep.training.fit import split_data


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
    sensitivity (``min(1, c * s_l)``; see ``keras_autorep.budgets``),
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
