"""The layer graph of a Keras functional model, read through Keras internals.

Keras 3 has no public API for a model's nodes (which layer feeds which) or
for the functional model class; these functions read them in one place.
"""

from keras.src.models.functional import Functional


def is_functional(model):
    """Whether ``model`` is a functional model (built from ``keras.Input``)."""
    return isinstance(model, Functional)


def graph_nodes(model):
    """The operations of a model in graph order: its layers and, in a
    functional model, the ``keras.ops`` calls on layer outputs."""
    if not is_functional(model):
        return list(model.layers)
    return model.operations


def is_nn_operation(node):
    """Whether a graph node is a ``keras.ops.nn`` operation (``ops.relu``,
    ``ops.silu``, ...) rather than a layer or another op."""
    return type(node).__module__.startswith("keras.src.ops.nn")


def call_nodes(layer):
    """The nodes of every call of ``layer`` on symbolic tensors."""
    return list(getattr(layer, "_inbound_nodes", []))


def consumer_layers(layer):
    """Layers called on an output of ``layer`` (one entry per call)."""
    return [node.operation for node in getattr(layer, "_outbound_nodes", [])]


def producer_layers(node):
    """Layers whose outputs a node of a call consumes."""
    return [parent.operation for parent in node.parent_nodes]


def producing_layer(tensor):
    """The layer (or ``InputLayer``) that computed a symbolic tensor."""
    return tensor._keras_history.operation
