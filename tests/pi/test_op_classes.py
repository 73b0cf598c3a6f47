"""One tiny model per op class of the keras.applications models, exported
and run unmodified in CrypTen, SPU SEMI2K and SPU CHEETAH: the secure
logits agree with the plaintext graph, and the calibrated prediction is
within 10 % of the measured bytes and 15 % of the rounds (none of these
models is a calibration program).

Needs the runtimes ``python -m keras_autorep.pi setup`` builds (``make
pi-env``)."""

import keras
import onnx
import pytest

from keras_autorep.export import export_all
from keras_autorep.export.pi_ops import unsupported_ops
from keras_autorep.pi import measure, onnx_workload, predict
from keras_autorep.pi.runtimes import RUNTIMES
from op_class_models import OP_CLASSES, images, op_class_model
from test_runtimes import missing_runtimes

pytestmark = [
    pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                       reason="the measured exports need TensorFlow"),
    pytest.mark.skipif(missing_runtimes() is not None,
                       reason=f"{missing_runtimes()}"),
]


@pytest.mark.parametrize("name", list(OP_CLASSES))
def test_op_class_runs_in_every_runtime_as_predicted(name, tmp_path):
    version = export_all(op_class_model(name), tmp_path, name)
    graph = onnx_workload(version / "model.onnx")
    assert unsupported_ops(onnx.load(str(version / "model.onnx"))) == {}
    for runtime in sorted(RUNTIMES):
        entry = measure(version, runtime, images(1))
        assert entry["top1_agreement"] == 1.0, runtime
        assert entry["max_abs_error"] < 0.05, (runtime, entry)
        predicted = predict(graph, runtime)
        assert predicted.bytes == pytest.approx(entry["bytes"], rel=0.1), (
            runtime, entry["bytes"])
        assert predicted.rounds == pytest.approx(entry["rounds"],
                                                 rel=0.15), (
            runtime, entry["rounds"])
