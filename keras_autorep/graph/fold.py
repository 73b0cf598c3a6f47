"""Affine replacements folded into the linear layer that feeds them.

A hardened site that keeps no ReLU and replaces every element with its
channel's line ``c1 x + c0`` (form ``poly1``) costs, in private inference,
a product with a constant and its truncation. When its input is computed
by a linear layer that nothing else reads (``FOLDABLE``: convolutions,
``Dense``, ``BatchNormalization``, with a bias or offset and no fused
activation), the layer's weights absorb the line exactly, whatever its
padding and strides, because the line is per output channel of that
layer: ``kernel * c1`` and ``bias * c1 + c0`` (``BatchNormalization``:
``gamma * c1``, ``beta * c1 + c0``). The site then computes nothing: it
becomes an identity (``PartialReLU(form="identity")``), which no protocol
pays for. Sites whose input is a merge (a residual ``Add``) or a layer
read elsewhere stay as they are; nested models fold inside.

``fold_linear_sites(model)`` folds every such site of a hardened model
(``harden`` does it); ``foldable_sites(model)`` names the sites, selector
or hardened, whose line would fold, so a cost budget prices them at 0.
"""

import keras
import numpy as np

from keras_autorep.graph.rewrite import GraphRewriter
from keras_autorep.graph.sites import activation_name, selectors
from keras_autorep.graph.topology import LayerGraph
from keras_autorep.layers import PartialReLU

L = keras.layers
FOLDABLE = (L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv2D, L.Dense,
            L.BatchNormalization)


def _absorbs(layer):
    """Whether ``layer`` can absorb a per-output-channel line."""
    if not isinstance(layer, FOLDABLE):
        return False
    if isinstance(layer, L.BatchNormalization):
        return layer.scale and layer.center and layer.axis in (-1, [-1])
    return layer.use_bias and activation_name(layer) in (None, "linear")


def _producer(graph, site):
    """The layer whose output only ``site`` reads, if it can absorb the
    site's line, else ``None``."""
    producers = graph.producers(site)
    if len(producers) != 1 or not _absorbs(producers[0]):
        return None
    return producers[0] if graph.only_consumer(producers[0]) is site else None


def foldable_sites(model):
    """``{site name: producer name}`` of the sites (``ReLUSelector`` or
    ``PartialReLU``) whose ``poly1`` line, with no ReLU kept, would fold
    into the linear layer feeding them."""
    graph = LayerGraph(model)
    candidates = {layer.name for layer in selectors(model)} | {
        layer.name for layer in graph.layers
        if isinstance(layer, PartialReLU)}
    found = {}
    for layer in graph.layers:
        if isinstance(layer, keras.Model):
            found.update(foldable_sites(layer))
        elif layer.name in candidates:
            producer = _producer(graph, layer)
            if producer is not None:
                found[layer.name] = producer.name
    return found


def _fold_line(layer, c0, c1):
    """Set ``layer``'s weights to compute ``c1 * layer(x) + c0``."""
    weights = layer.get_weights()
    if isinstance(layer, L.BatchNormalization):
        gamma, beta, *statistics = weights
        layer.set_weights([gamma * c1, beta * c1 + c0, *statistics])
        return
    kernel, bias = weights
    if isinstance(layer, L.DepthwiseConv2D):  # channel i * multiplier + m
        scale = c1.reshape(kernel.shape[2], kernel.shape[3])
    else:
        scale = c1
    layer.set_weights([kernel * scale, bias * c1 + c0])


def fold_linear_sites(model):
    """``model`` with every ``poly1`` site that keeps no ReLU folded into
    the linear layer feeding it (see the module doc); the model itself
    when there is none. Outputs are unchanged up to float rounding."""
    graph = LayerGraph(model)
    folds, nested = {}, {}
    for layer in graph.layers:
        if isinstance(layer, keras.Model):
            copy = fold_linear_sites(layer)
            if copy is not layer:
                nested[layer.name] = copy
        elif (isinstance(layer, PartialReLU) and layer.num_kept == 0
                and layer.form == "poly1"):
            producer = _producer(graph, layer)
            if producer is not None:
                folds[layer.name] = producer.name
    if not folds and not nested:
        return model

    def replace(layer):
        if layer.name in nested:
            return [nested[layer.name]]
        if layer.name not in folds:
            return None
        return [PartialReLU(0, form="identity", activation=layer.activation,
                            name=layer.name)]

    folded = GraphRewriter(replace, lambda layer: layer.name in folds
                           or layer.name in nested).rebuild(model)
    for site, producer in folds.items():
        c0, c1 = keras.ops.convert_to_numpy(
            model.get_layer(site).coefficients).astype("float32")
        _fold_line(folded.get_layer(producer), c0, c1)
    folded.jit_compile = model.jit_compile
    return folded
