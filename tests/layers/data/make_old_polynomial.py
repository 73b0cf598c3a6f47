"""Writes ``old_polynomial.keras`` and ``old_polynomial.npz`` beside this
file: a trained model with DaPa polynomials saved in the format before the
fitted part existed (one trainable ``coefficients`` variable per
polynomial), and its inputs, predictions and coefficients.

The committed files were made at commit 868b75a, from a checkout of it::

    git worktree add /tmp/old 868b75a
    cd /tmp/old && python /path/to/tests/layers/data/make_old_polynomial.py

Run with a newer checkout it writes files in the newer format.
"""

from pathlib import Path

import keras
import numpy as np

from keras_autorep import PolynomialActivation, ReLUSelector

HERE = Path(__file__).resolve().parent


def main():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((6, 6, 3)),
        keras.layers.Conv2D(4, 3, padding="same",
                            bias_initializer=keras.initializers.Constant(2.0)),
        PolynomialActivation(refit_every=1, refit_steps=2, name="poly"),
        keras.layers.Conv2D(4, 3, padding="same"),
        ReLUSelector(refit_every=2, name="selector"),
        ReLUSelector(fit="identity", degree=1, name="identity"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])
    model.compile(keras.optimizers.Adam(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6, 6, 3)).astype("float32")
    model.fit(x, rng.integers(0, 3, 32), batch_size=8, epochs=1, verbose=0)
    model.save(HERE / "old_polynomial.keras")
    coefficients = {
        name: keras.ops.convert_to_numpy(model.get_layer(name).coefficients)
        for name in ("poly", "selector", "identity")}
    np.savez(HERE / "old_polynomial.npz", x=x,
             predictions=model.predict(x, verbose=0), **coefficients)


if __name__ == "__main__":
    main()
