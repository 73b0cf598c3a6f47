"""The contract every keras_autorep layer keeps: it builds inside a model,
trains and infers, and survives a ``.keras`` save and reload unchanged."""

import keras
import numpy as np


def check_layer_contract(make_layer, input_shape, tmp_path, *, conv=True,
                         prepare=None, seed=0):
    """Check one layer in a ``keras.Sequential`` and return what it built.

    The layer goes after a ``Conv2D(4, 3, padding="same")`` (or directly
    after the input with ``conv=False``). The model is built, called once in
    training mode (statistics, masks, refits move) and once in inference
    mode, saved to ``.keras`` and reloaded; the reloaded layer must have the
    same type and ``get_config`` and the reloaded model the same
    predictions.

    Args:
        make_layer: ``() -> layer``.
        input_shape: one example's shape.
        tmp_path: folder for the ``.keras`` file.
        conv: put a ``Conv2D`` before the layer.
        prepare: optional ``prepare(layer)`` run once the layer is built
            (e.g. to set a mask), before the training call.
        seed: seed of the random inputs.

    Returns:
        ``(model, reloaded, x)``.
    """
    layer = make_layer()
    stack = [keras.Input(input_shape)]
    if conv:
        stack.append(keras.layers.Conv2D(4, 3, padding="same"))
    model = keras.Sequential([*stack, layer])
    assert layer.built
    assert model.layers[-1] is layer
    if prepare is not None:
        prepare(layer)
    x = np.random.default_rng(seed).normal(size=(5, *input_shape))
    x = x.astype("float32")
    trained = keras.ops.convert_to_numpy(model(x, training=True))
    # Every keras_autorep layer is element-wise: the shape goes through.
    assert trained.shape == x.shape[:-1] + ((4,) if conv else x.shape[-1:])
    inferred = keras.ops.convert_to_numpy(model(x, training=False))
    assert inferred.shape == trained.shape
    assert np.all(np.isfinite(inferred))

    path = tmp_path / f"{type(layer).__name__}_{layer.name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded.layers[-1]) is type(layer)
    assert reloaded.layers[-1].get_config() == layer.get_config()
    predictions = model.predict(x, verbose=0)
    np.testing.assert_allclose(predictions, inferred, atol=1e-6)
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), predictions, atol=1e-6
    )
    return model, reloaded, x
