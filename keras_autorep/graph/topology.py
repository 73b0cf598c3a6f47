"""Who feeds whom among the top-level layers of a model."""

import keras

from keras_autorep.adapters.keras_graph import (
    call_nodes,
    consumer_layers,
    producer_layers,
    producing_layer,
)
from keras_autorep.graph.rewrite import check_rewritable

MERGE_LAYERS = (keras.layers.Add, keras.layers.Average,
                keras.layers.Concatenate)


class LayerGraph:
    """Producers and consumers of the top-level layers of a model.

    Layers called more than once (shared) get no producers or consumers, so
    no rule applies to them; inputs count as producers of unknown sign.
    """

    def __init__(self, model):
        check_rewritable(model)
        self.layers = [
            layer for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer)
        ]
        members = {id(layer) for layer in model.layers}
        outputs = {id(producing_layer(t)) for t in model.outputs}
        self._producers, self._consumers, self._is_output = {}, {}, {}
        for layer in self.layers:
            nodes = call_nodes(layer)
            single = len(nodes) == 1
            self._producers[layer.name] = (
                producer_layers(nodes[0]) if single else []
            )
            self._consumers[layer.name] = [
                consumer for consumer in consumer_layers(layer)
                if id(consumer) in members
            ] if single else []
            self._is_output[layer.name] = not single or id(layer) in outputs

    def producers(self, layer):
        return self._producers[layer.name]

    def only_consumer(self, layer):
        """The single layer consuming ``layer``'s output, or ``None`` (also
        when the output is a model output)."""
        consumers = self._consumers[layer.name]
        if len(consumers) != 1 or self._is_output[layer.name]:
            return None
        return consumers[0]

    def feeds_only_merges(self, layer):
        consumers = self._consumers[layer.name]
        return (bool(consumers) and not self._is_output[layer.name]
                and all(isinstance(c, MERGE_LAYERS) for c in consumers))
