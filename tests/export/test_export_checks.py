"""Export refuses an unstable model and cross-checks its graphs."""

import json
import types

import keras
import numpy as np
import pytest
from keras import ops

import keras_autorep as ka
from keras_autorep.export import (
    Calibration,
    ExportMismatchError,
    UnstableModelError,
    check_outputs,
    export_all,
    onnx_relu_elements,
    relu_elements,
)
from keras_autorep.export.checks import check_exported_relus


@keras.saving.register_keras_serializable(package="keras_autorep_tests")
class DoubledReLU(keras.layers.Layer):
    """A custom layer computing ReLUs that no table row names."""

    def call(self, inputs):
        return ops.relu(inputs) + ops.relu(-inputs)


def custom_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = DoubledReLU(name="doubled")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x), name="custom")


def images(n=8):
    return np.random.default_rng(0).random((n, 8, 8, 3)).astype("float32")


def test_traced_relus_are_in_the_spec_and_the_graphs_agree(tmp_path):
    model = custom_model()
    count = ka.count_relus(model)
    assert count.kept == 256 * 3 and count.graph_relus == 768
    path = export_all(model, tmp_path, "custom")
    spec = json.loads((path / "pi_spec.json").read_text())
    assert spec["totals"]["relu_kept"] == 768
    assert spec["totals"]["max_comparisons"] == 64 * 3
    assert [entry["layer"] for entry in spec["traced"]] == ["doubled"]
    assert relu_elements(path) == onnx_relu_elements(
        path / "model.onnx") == 768


def test_a_graph_that_disagrees_with_the_count_is_refused(tmp_path):
    model = custom_model()
    path = export_all(model, tmp_path, "custom")
    wrong = types.SimpleNamespace(graph_relus=512)
    with pytest.raises(ExportMismatchError, match="768 ReLU elements"):
        check_exported_relus(path, wrong)


def test_an_exploding_model_is_not_exported(tmp_path):
    keras.utils.set_random_seed(0)
    teacher = custom_model()
    calibration = Calibration.from_teacher(teacher, images())
    assert calibration.max_abs_logit > 0
    check_outputs(teacher, calibration)
    exploding = custom_model()
    dense = exploding.layers[-1]
    dense.set_weights([w * 1e6 for w in dense.get_weights()])
    with pytest.raises(UnstableModelError, match="beyond the bound"):
        export_all(exploding, tmp_path, "exploding", calibration=calibration)
    nan = custom_model()
    nan.layers[-1].set_weights(
        [np.full_like(w, np.nan) for w in nan.layers[-1].get_weights()])
    with pytest.raises(UnstableModelError, match="non-finite logits on 8"):
        export_all(nan, tmp_path, "nan", calibration=calibration)
    assert not (tmp_path / "exploding").exists() or not any(
        (tmp_path / "exploding").iterdir())
    assert not any(p.name.isdigit() for p in tmp_path.glob("*/*"))


def test_a_keras_file_that_reloads_as_another_function_is_refused(tmp_path):
    """A ``Normalization`` whose statistics were assigned but never
    finalised computes with its initial ones; its ``.keras`` file reloads
    with the assigned ones: export stops and publishes nothing."""
    model = custom_model()
    normalization = keras.layers.Normalization()
    stale = keras.Sequential([keras.Input((8, 8, 3)), normalization, model])
    normalization.adapt_mean.assign(np.full((3,), 5.0, "float32"))
    with pytest.raises(ExportMismatchError,
                       match="model.keras computes other logits"):
        export_all(stale, tmp_path, "stale")
    assert not any(p.name.isdigit() for p in tmp_path.glob("*/*"))
    normalization.finalize_state()
    export_all(keras.Sequential([keras.Input((8, 8, 3)), normalization, model]),
               tmp_path, "finalised")
