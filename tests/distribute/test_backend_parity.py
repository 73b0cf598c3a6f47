"""TensorFlow and JAX train alike: one teacher and one student, each loaded
from one ``.keras`` file, one sequence of seeded batches (``.npy``), and 30
``BudgetTrainer`` steps in a fresh process per backend
(``backend_parity_check.py``), on one device and on two simulated ones
(``DataParallel`` under JAX, ``MirroredStrategy`` under TensorFlow)."""

import keras
import numpy as np
import pytest

from keras_autorep import replace_relus
from keras_autorep.dapa import dapa_coefficients

from check_runs import run_check

STEPS, BATCH = 30, 32  # BATCH as in backend_parity_check.py
# Measured, TensorFlow against JAX (2-core CPU; TensorFlow 2.21, JAX 0.10.2,
# Keras 3.15), on one device and on two: per-step losses within 1.2e-6
# (3.4e-7 relative), coefficients within 6e-7, running means within 4.1e-6
# and standard deviations within 1.1e-6; the float32 convolutions and
# reductions of the two engines add in other orders.
RTOL, ATOL = 1e-5, 1e-5


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``{backend: {devices: run}}`` from the same files."""
    folder = tmp_path_factory.mktemp("parity")
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(
            8, 3, padding="same", activation="relu",
            bias_initializer=keras.initializers.Constant(1.0)),
        keras.layers.Conv2D(8, 3, padding="same"),
        keras.layers.ReLU(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10)])
    # refits at steps 0, 3, ..., 27, backpropagation in between
    replace_relus(teacher, refit_every=3).save(folder / "student.keras")
    teacher.save(folder / "teacher.keras")
    rng = np.random.default_rng(0)
    np.save(folder / "x.npy", rng.normal(
        size=(STEPS * BATCH, 8, 8, 3)).astype("float32"))
    np.save(folder / "y.npy", rng.integers(0, 10, STEPS * BATCH))
    return {backend: run_check("backend_parity_check.py", backend, folder)
            for backend in ("tensorflow", "jax")}


@pytest.mark.parametrize("devices", ["1", "2"])
def test_tensorflow_and_jax_train_alike(runs, devices):
    tf_run, jax_run = runs["tensorflow"][devices], runs["jax"][devices]
    assert len(tf_run["losses"]) == len(jax_run["losses"]) == STEPS
    np.testing.assert_allclose(jax_run["losses"], tf_run["losses"],
                               rtol=RTOL)
    assert jax_run["relu_counts"] == tf_run["relu_counts"]
    for a, b in zip(tf_run["state"], jax_run["state"], strict=True):
        assert b["mask"] == a["mask"]
        for key in ("coefficients", "mean", "std"):
            np.testing.assert_allclose(b[key], a[key], rtol=RTOL, atol=ATOL)
        # a trained state: the polynomial is far from the N(0, 1) fit
        standard = keras.ops.convert_to_numpy(dapa_coefficients(
            np.zeros(8), np.ones(8)))
        assert np.abs(np.array(a["coefficients"]) - standard).max() > 0.1
    # the masks moved, and neither to all kept nor to none
    assert 0 < tf_run["relu_counts"][-1] < tf_run["relu_counts"][0]
