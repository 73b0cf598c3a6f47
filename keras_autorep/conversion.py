"""Model conversion: ReLUs -> selectors (training) -> PartialReLU (inference).

``replace_relus`` turns every ReLU of a Sequential or functional model into a
``ReLUSelector``; ``harden`` turns every selector into a ``PartialReLU`` that
keeps at most the budgeted number of ReLUs. Both return new models and carry
the weights of all other layers over.
"""

import keras
import numpy as np

from keras_autorep.budget import parse_budget
from keras_autorep.counting import (
    UNCOUNTED_SUFFIX,
    activation_name,
    count_relus,
    is_plain_relu_layer,
)
from keras_autorep.layers import PartialReLU, ReLUSelector


def _unsupported_model_error(model):
    return TypeError(
        f"{type(model).__name__} is a subclassed model; keras_autorep can "
        "convert only keras.Sequential and functional models (built with "
        "keras.Input), whose layer graph it can rewrite. Rebuild the model "
        "functionally, or put ReLUSelector layers in it yourself."
    )


class _Rewriter:
    """Rebuilds a model, letting ``replace(layer)`` swap layers out.

    ``replace(layer)`` returns a list of layers to apply in sequence in place
    of ``layer``, or ``None`` to keep a copy of it; ``is_target(layer)`` says,
    without side effects, whether ``replace`` would swap it.
    ``clone(layer, ...)`` makes a copy whose weights are carried over once the
    new model is built.
    """

    def __init__(self, replace, is_target):
        self._replace = replace
        self._is_target = is_target
        self._weight_pairs = []
        self._chains = {}

    def clone(self, layer, **config_overrides):
        config = layer.get_config()
        config.update(config_overrides)
        copy = layer.__class__.from_config(config)
        self._weight_pairs.append((layer, copy))
        return copy

    def _layers_for(self, layer):
        if isinstance(layer, keras.Model):
            self._check_nested(layer)
        chain = self._replace(layer)
        return chain if chain is not None else [self.clone(layer)]

    def _check_nested(self, submodel):
        if any(self._is_target(inner) for inner in submodel.layers):
            raise ValueError(
                f"nested model {submodel.name!r} contains layers to convert; "
                "keras_autorep converts top-level layers only: flatten the "
                "model (call the sub-model's layers directly) first"
            )

    def rebuild(self, model):
        if isinstance(model, keras.Sequential):
            new_model = self._rebuild_sequential(model)
        elif isinstance(model, keras.src.models.Functional):
            new_model = self._rebuild_functional(model)
        else:
            raise _unsupported_model_error(model)
        for original, copy in self._weight_pairs:
            copy.set_weights(original.get_weights())
        return new_model

    def _rebuild_sequential(self, model):
        if not model.built or not model.inputs:
            raise ValueError(
                "the Sequential model must be built with an input shape "
                "(start it with keras.Input(shape)) before conversion"
            )
        layers = [keras.Input(batch_shape=model.inputs[0].shape)]
        for layer in model.layers:
            layers.extend(self._layers_for(layer))
        return keras.Sequential(layers, name=model.name)

    def _rebuild_functional(self, model):
        def clone_function(layer):
            chain = self._layers_for(layer)
            self._chains[id(chain[0])] = chain[1:]
            return chain[0]

        def call_function(layer, *args, **kwargs):
            outputs = layer(*args, **kwargs)
            for follower in self._chains.get(id(layer), ()):
                outputs = follower(outputs)
            return outputs

        return keras.models.clone_model(
            model, clone_function=clone_function, call_function=call_function
        )


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model, got {model!r}")
    if not isinstance(model, keras.Sequential) and not isinstance(
        model, keras.src.models.Functional
    ):
        raise _unsupported_model_error(model)


def replace_relus(model, **selector_options):
    """Return a copy of ``model`` with every ReLU replaced by a selector.

    Replaced: ``ReLU()`` layers, ``Activation("relu")`` and fused
    ``activation="relu"`` (the layer is copied with a linear activation and a
    ``ReLUSelector`` named ``<layer>_relu`` follows it). Layers named
    ``*_uncounted`` stay ReLUs (see ``keras_autorep.counting``). All weights
    are carried over; with all masks at 1 (the initial state) the new model
    computes the same function as the original.

    Args:
        model: a built ``keras.Sequential`` or functional model.
        **selector_options: passed to every ``ReLUSelector`` (e.g.
            ``granularity="channel"``, ``degree=1``, ``fit="identity"``).

    Returns:
        A new model of the same kind (Sequential stays Sequential).
    """
    _check_model(model)
    ReLUSelector(**selector_options)  # validate options before any cloning

    def is_standalone_relu(layer):
        return is_plain_relu_layer(layer) or (
            isinstance(layer, keras.layers.Activation)
            and activation_name(layer) == "relu"
        )

    def is_target(layer):
        return not layer.name.endswith(UNCOUNTED_SUFFIX) and (
            is_standalone_relu(layer) or activation_name(layer) == "relu"
        )

    def replace(layer):
        if not is_target(layer):
            return None
        if is_standalone_relu(layer):
            return [ReLUSelector(name=layer.name, **selector_options)]
        return [
            rewriter.clone(layer, activation="linear"),
            ReLUSelector(name=f"{layer.name}_relu", **selector_options),
        ]

    rewriter = _Rewriter(replace, is_target)
    return rewriter.rebuild(model)


def selectors(model):
    """The ``ReLUSelector`` layers of a model, in graph order."""
    return [layer for layer in model.layers if isinstance(layer, ReLUSelector)]


def _expanded(selector, values):
    """Broadcast per-indicator values to the full activation shape."""
    return np.broadcast_to(
        keras.ops.convert_to_numpy(values), selector.activation_shape
    ).ravel()


def final_masks(model, budget=None):
    """The flat kept-position masks that hardening will use, per selector.

    The masks as trained; if they keep more than ``budget`` ReLUs, only the
    ``budget`` kept positions with the largest indicator values survive.

    Returns:
        ``{selector name: boolean array of H*W*C}``.
    """
    sites = selectors(model)
    masks = {s.name: _expanded(s, s.mask) > 0.5 for s in sites}
    kept = sum(int(mask.sum()) for mask in masks.values())
    if budget is None or kept <= budget:
        return masks
    scores = np.concatenate(
        [np.where(masks[s.name], _expanded(s, s.alpha), -np.inf) for s in sites]
    )
    survivors = np.zeros(scores.size, dtype=bool)
    if budget > 0:
        survivors[np.argsort(-scores, kind="stable")[:budget]] = True
    offset = 0
    for site in sites:
        size = masks[site.name].size
        masks[site.name] = survivors[offset : offset + size]
        offset += size
    return masks


def harden(model, budget=None):
    """Return the inference model: every ``ReLUSelector`` -> ``PartialReLU``.

    Indicators and statistics are dropped; the binary masks and per-channel
    polynomial coefficients are frozen. The result never keeps more than
    ``budget`` ReLUs (see ``final_masks``); where no trimming was needed its
    outputs equal the selector model's inference outputs.

    Args:
        model: a model with ``ReLUSelector`` layers (from ``replace_relus``).
        budget: optional ReLU budget (anything ``parse_budget`` accepts;
            percentages refer to the model's total ReLUs).
    """
    _check_model(model)
    if budget is not None:
        budget = parse_budget(budget, total=count_relus(model).total)
    masks = final_masks(model, budget)

    def replace(layer):
        if not isinstance(layer, ReLUSelector):
            return None
        kept = np.flatnonzero(masks[layer.name])
        return [
            PartialReLU(
                num_kept=kept.size,
                degree=layer.degree,
                kept_indices=kept,
                coefficients=keras.ops.convert_to_numpy(layer.coefficients),
                name=layer.name,
            )
        ]

    def is_target(layer):
        return isinstance(layer, ReLUSelector)

    return _Rewriter(replace, is_target).rebuild(model)
