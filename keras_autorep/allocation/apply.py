"""Seeding a student's masks at per-site counts."""

import keras

from keras_autorep.graph import random_masks, selectors, set_masks, top_masks


def apply_allocation(student, counts, seed=None, by="random", freeze=False):
    """Set every selector's mask to keep ``counts[site]`` ReLUs.

    Args:
        student: a model with ``ReLUSelector`` layers.
        counts: ``{site: ReLUs to keep}`` for every site.
        seed: seed of the random positions.
        by: ``"random"`` positions or the largest ``"alpha"`` indicators.
        freeze: freeze the masks (SNL/SENet-style training); unfrozen, the
            indicators take the masks' signs so that AutoReP's search starts
            from them.

    Returns:
        The masks set, ``{site: boolean array}``.
    """
    if by == "random":
        masks = random_masks(student, counts, seed)
    elif by == "alpha":
        alphas = {
            s.name: keras.ops.convert_to_numpy(s.alpha)
            for s in selectors(student)
        }
        masks = top_masks(student, alphas, counts=counts)
    else:
        raise ValueError(f"by must be 'random' or 'alpha', got {by!r}")
    set_masks(student, masks, freeze=freeze)
    return masks
