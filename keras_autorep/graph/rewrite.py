"""Rewriting the layer graph of a Sequential or functional model.

``GraphRewriter(replace)`` rebuilds a model, letting ``replace(layer)`` swap
a layer (or a ``keras.ops`` node of a functional model) for a chain of
layers; every other layer is copied with its weights, every other op node
copied from its config. ``replace_relus``, ``harden`` and the CryptoNAS transforms are
rewrites.
"""

import keras

from keras_autorep.adapters.keras_graph import graph_nodes, is_functional


def iter_layers(model):
    """All layers of a model, descending into nested models, and the
    ``keras.ops`` nodes of functional models, in graph order."""
    for layer in graph_nodes(model):
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


def copy_weights(source, target):
    """Give ``target`` (a layer or model) the weights of ``source``.

    Some Keras layers compute from their variables a state that ``call``
    reads (an adapted ``Normalization``'s mean and variance, as in every
    ``keras.applications`` EfficientNet): ``set_weights`` alone leaves
    that state at the copy's initial values, so the copy would compute
    another function. Keras's ``finalize_state`` recomputes it, as loading
    a ``.keras`` file does.
    """
    target.set_weights(source.get_weights())
    layers = iter_layers(target) if isinstance(target, keras.Model) else [
        target]
    for layer in layers:
        finalize_state = getattr(layer, "finalize_state", None)
        if finalize_state is not None:
            finalize_state()


def check_rewritable(model):
    """Raise ``TypeError`` unless ``model`` is a Sequential or functional
    ``keras.Model`` (whose layer graph can be rewritten)."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model, got {model!r}")
    if not isinstance(model, keras.Sequential) and not is_functional(model):
        raise TypeError(
            f"{type(model).__name__} is a subclassed model; keras_autorep can "
            "convert only keras.Sequential and functional models (built with "
            "keras.Input), whose layer graph it can rewrite. Rebuild the "
            "model functionally, or put ReLUSelector layers in it yourself."
        )


class GraphRewriter:
    """Rebuilds a model, letting ``replace(layer)`` swap layers out.

    ``replace(layer)`` returns a list of layers to apply in sequence in place
    of ``layer``, or ``None`` to keep a copy of it. A nested model is asked
    too; kept, it is rebuilt the same way, at any depth, when it holds a
    target (a Sequential stays Sequential), else copied. ``clone(layer, ...)``
    makes a copy (config overrides allowed) whose weights are carried over
    once the new model is built; ``replace`` may use it for the layers it
    returns.

    Args:
        replace: ``layer -> list of layers | None``.
        is_target: ``layer -> bool``, without side effects: whether
            ``replace`` would swap the layer (a nested model holding none
            is copied as it is).

    Example:

    >>> rewriter = GraphRewriter(
    ...     lambda layer: [keras.layers.Identity(name=layer.name)]
    ...     if isinstance(layer, keras.layers.Dropout) else None,
    ...     lambda layer: isinstance(layer, keras.layers.Dropout))
    >>> without_dropout = rewriter.rebuild(model)
    """

    def __init__(self, replace, is_target):
        self._replace = replace
        self._is_target = is_target
        self._weight_pairs = []
        self._chains = {}

    def clone(self, layer, **config_overrides):
        """A copy of ``layer`` (weights carried over after ``rebuild``), or
        of a ``keras.ops`` node (stateless: its config is all of it)."""
        config = layer.get_config()
        config.update(config_overrides)
        if not isinstance(layer, keras.layers.Layer):
            try:
                return layer.__class__.from_config(config)
            except Exception as error:
                raise ValueError(
                    f"keras.ops node {layer.name!r} "
                    f"({type(layer).__name__}) cannot be copied from its "
                    f"config ({error}); wrap that computation in a "
                    "registered Keras layer (or a Lambda) and convert again"
                ) from error
        copy = layer.__class__.from_config(config)
        self._weight_pairs.append((layer, copy))
        return copy

    def _layers_for(self, layer):
        chain = self._replace(layer)
        if chain is not None:
            return chain
        if isinstance(layer, keras.Model) and any(
            self._is_target(inner) for inner in iter_layers(layer)
        ):
            return [self._rebuild_model(layer)]
        return [self.clone(layer)]

    def rebuild(self, model):
        """The rewritten model (Sequential stays Sequential)."""
        new_model = self._rebuild_model(model)
        for original, copy in self._weight_pairs:
            copy_weights(original, copy)
        return new_model

    def _rebuild_model(self, model):
        check_rewritable(model)
        if isinstance(model, keras.Sequential):
            return self._rebuild_sequential(model)
        return self._rebuild_functional(model)

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
