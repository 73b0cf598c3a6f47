"""ReLU pruning and ReLU shuffling (CryptoNAS) as model transforms.

Both take a built ``keras.Sequential`` or functional model and return a new
model of the same kind with all weights carried over (``GraphRewriter``). A
*ReLU site* here is a convertible site of ``keras_autorep.graph.sites``: a
plain ``ReLU()`` layer, an ``Activation("relu")`` or a fused
``activation="relu"``.

``prune_relus`` removes ReLU sites that add nothing:

* **non-negative input** (function unchanged): a standalone ReLU whose input
  is provably ``>= 0``. A tensor is provably non-negative when it is the
  output of a ReLU (``ReLU`` with ``negative_slope=0`` and ``threshold >=
  0``, or a ``relu``/``relu6`` activation), or of a layer in
  ``NONNEGATIVE_PRESERVING`` (pooling, reshaping, padding, dropout, merges,
  ...) all of whose inputs are provably non-negative. Example: a ReLU right
  after another ReLU, or after a max-pool of ReLU outputs.
* **skip paths** (``skip_paths=True``; the function changes): CryptoNAS
  removes the ReLU after a 1x1 convolution in a skip path. Removed: a ReLU
  site fed by a convolution with kernel size 1 (directly, fused, or through
  one ``BatchNormalization``) whose output goes only into merge layers
  (``Add``, ``Concatenate``, ``Average``) and is no model output. The branch
  becomes linear, so fine-tune the result.

A removed standalone ReLU becomes a ``keras.layers.Identity`` of the same
name; a removed fused ReLU leaves its layer with a linear activation.

``shuffle_relus`` moves a ReLU site to after the pooling layer that directly
follows it (its only consumer, not a model output, and a pool called only
there), where the activation map is smaller; the count drops by the pooling
factor:

* max-pooling (``MaxPooling*D``, ``GlobalMaxPooling*D``): exact, since ReLU
  is non-decreasing, ``relu(maxpool(x)) == maxpool(relu(x))`` (padded
  positions never win a max);
* average pooling (``AveragePooling*D``, ``GlobalAveragePooling*D``), only
  with ``exact=False``: the function changes (``relu(mean(x)) <=
  mean(relu(x))``, equal only where a window has no negative element), so
  fine-tune the result.

Pruning after shuffling catches ReLUs that shuffling made redundant
(``relu -> maxpool -> relu`` becomes ``maxpool -> relu -> relu``):
``prune_relus(shuffle_relus(model))``.
"""

import keras
import numpy as np

from keras_autorep.adapters.keras_graph import call_nodes
from keras_autorep.graph.rewrite import GraphRewriter, check_rewritable
from keras_autorep.graph.sites import (
    FUSED_RELU,
    STANDALONE_RELU,
    activation_name,
    site_of,
)
from keras_autorep.graph.topology import LayerGraph

L = keras.layers
NONNEGATIVE_PRESERVING = (
    L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
    L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D,
    L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
    L.GlobalAveragePooling1D, L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D,
    L.Flatten, L.Reshape, L.Permute, L.Identity,
    L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
    L.Cropping1D, L.Cropping2D, L.Cropping3D,
    L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D,
    L.UpSampling1D, L.UpSampling2D, L.UpSampling3D,
    L.Add, L.Average, L.Concatenate, L.Maximum, L.Minimum, L.Multiply,
)
MAX_POOLING = (
    L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
    L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
)
AVERAGE_POOLING = (
    L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D,
    L.GlobalAveragePooling1D, L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D,
)
CONVOLUTIONS = (L.Conv1D, L.Conv2D, L.Conv3D)


def _relu_site(layer):
    """``STANDALONE_RELU``, ``FUSED_RELU`` or ``None``."""
    site = site_of(layer)
    return site.kind if site is not None and site.convertible else None


def _outputs_relu(layer):
    """True if the layer's output is a ReLU (or relu6) of something."""
    if isinstance(layer, L.ReLU):
        return not layer.negative_slope and layer.threshold >= 0
    return activation_name(layer) in ("relu", "relu6")


def _is_pointwise_conv(layer):
    return isinstance(layer, CONVOLUTIONS) and set(layer.kernel_size) == {1}


def _after_pointwise_conv(layer, graph):
    """True if ``layer``'s input comes from a 1x1 conv, directly or through
    one BatchNormalization."""
    producers = graph.producers(layer)
    if len(producers) != 1:
        return False
    (producer,) = producers
    if isinstance(producer, L.BatchNormalization):
        producers = graph.producers(producer)
        producer = producers[0] if len(producers) == 1 else None
    return _is_pointwise_conv(producer)


def prunable_relus(model, skip_paths=False):
    """The ReLU sites ``prune_relus`` removes, with the reason.

    Returns:
        ``{layer name: "non-negative input" | "skip path after 1x1 conv"}``
        in graph order (see the module docstring for the exact rules).
    """
    graph = LayerGraph(model)
    reasons = {}
    if skip_paths:
        for layer in graph.layers:
            site = _relu_site(layer)
            pointwise = (_is_pointwise_conv(layer) if site == FUSED_RELU
                         else site and _after_pointwise_conv(layer, graph))
            if pointwise and graph.feeds_only_merges(layer):
                reasons[layer.name] = "skip path after 1x1 conv"
    nonnegative = {}
    for layer in graph.layers:  # topological order
        inputs_nonnegative = bool(graph.producers(layer)) and all(
            nonnegative.get(p.name, False) for p in graph.producers(layer))
        if layer.name in reasons:  # now linear: passes its input through
            nonnegative[layer.name] = inputs_nonnegative
            continue
        if _relu_site(layer) == STANDALONE_RELU and inputs_nonnegative:
            reasons[layer.name] = "non-negative input"
        nonnegative[layer.name] = _outputs_relu(layer) or (
            isinstance(layer, NONNEGATIVE_PRESERVING) and inputs_nonnegative)
    return {layer.name: reasons[layer.name] for layer in graph.layers
            if layer.name in reasons}


def prune_relus(model, skip_paths=False):
    """Return a copy of ``model`` without the ReLUs that add nothing.

    Args:
        model: a built ``keras.Sequential`` or functional model.
        skip_paths: also remove ReLUs after 1x1 convs in skip paths
            (CryptoNAS); this changes the function.

    Returns:
        A new model of the same kind, weights carried over. Without
        ``skip_paths`` it computes exactly the same function.
    """
    pruned = prunable_relus(model, skip_paths)

    def replace(layer):
        if layer.name not in pruned:
            return None
        if _relu_site(layer) == STANDALONE_RELU:
            return [L.Identity(name=layer.name)]
        return [rewriter.clone(layer, activation="linear")]

    rewriter = GraphRewriter(replace, lambda layer: layer.name in pruned)
    return rewriter.rebuild(model)


def _size(shape):
    return int(np.prod(shape[1:]))


def shufflable_relus(model, exact=True):
    """The ReLU sites ``shuffle_relus`` moves, with the pooling layer each
    moves past.

    Returns:
        ``{ReLU site name: pooling layer name}`` in graph order.
    """
    graph = LayerGraph(model)
    pools = MAX_POOLING if exact else MAX_POOLING + AVERAGE_POOLING
    moves = {}
    for layer in graph.layers:
        pool = graph.only_consumer(layer) if _relu_site(layer) else None
        if (isinstance(pool, pools)
                and len(call_nodes(pool)) == 1  # a shared pool stays
                and _size(pool.output.shape) < _size(layer.output.shape)):
            moves[layer.name] = pool.name
    return moves


def shuffle_relus(model, exact=True):
    """Return a copy of ``model`` with ReLUs moved past the pooling layer
    that follows them (see the module docstring).

    Args:
        model: a built ``keras.Sequential`` or functional model.
        exact: move past max-pooling only (function unchanged); ``False``
            also moves past average pooling (function changes).

    Returns:
        A new model of the same kind, weights carried over, with fewer ReLUs
        (each moved ReLU is counted on the pooled map).
    """
    moves = shufflable_relus(model, exact)
    pools = {pool: site for site, pool in moves.items()}
    layers = {layer.name: layer for layer in model.layers}

    def replace(layer):
        if layer.name in moves:  # the ReLU site: apply the pool here
            pool = rewriter.clone(layers[moves[layer.name]])
            if _relu_site(layer) == STANDALONE_RELU:
                return [pool]
            return [rewriter.clone(layer, activation="linear"), pool]
        if layer.name in pools:  # the pool: apply the ReLU here
            site = layers[pools[layer.name]]
            if _relu_site(site) == STANDALONE_RELU:
                return [rewriter.clone(site)]
            return [L.ReLU(name=f"{site.name}_relu")]
        return None

    rewriter = GraphRewriter(replace, lambda layer: layer.name in moves.keys()
                         | pools.keys())
    return rewriter.rebuild(model)
