"""One tiny model per op class of the keras.applications models, exported
and run unmodified in CrypTen, SPU SEMI2K and SPU CHEETAH: the secure
logits agree with the plaintext graph, and the calibrated prediction is
within 10 % of the measured bytes and 15 % of the rounds (none of these
models is a calibration program).

CHEETAH takes the Beaver triples of small secret products from a cache it
fills ``TRIPLE_BATCH`` products at a time; each product then sends its
two openings (``OPENING_BYTES``). The calibration prices the refills
amortised over the products, while one image of a model this small pays
the refills its own products trigger after the runner's warm-up image
(``one_image_bytes``). Likewise CHEETAH's OT buffers: the prediction holds
their refills amortised, one image pays whole ones
(``Prediction.nearest_paid``).

Needs the runtimes ``python -m keras_autorep.pi setup`` builds (``make
pi-env``)."""

import math

import keras
import onnx
import pytest

from keras_autorep.costs.model import calibration
from keras_autorep.export import export_all
from keras_autorep.export.pi_ops import unsupported_ops
from keras_autorep.pi import measure, onnx_workload, predict
from keras_autorep.pi.runtimes import RUNTIMES
from op_class_models import OP_CLASSES, images, op_class_model

# The runtimes come from the pi_runtimes fixture (a skip without them, a
# failure under CI=true).
pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="the measured exports need TensorFlow")

# CHEETAH (SPU 0.9.5, FM64): small secret products per refill of its
# triple cache, and the bytes a product with cached triples sends (both
# parties send their shares of the two masked operands: 2 x 2 x 8 B).
TRIPLE_BATCH = 4096
OPENING_BYTES = 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``name -> version folder``, each op class exported once."""
    folder = tmp_path_factory.mktemp("op_classes")
    versions = {}

    def version(name):
        if name not in versions:
            versions[name] = export_all(op_class_model(name), folder, name)
        return versions[name]

    return version


def one_image_bytes(predicted, workload, runtime):
    """The bytes of one image measured right after a warm-up image: under
    CHEETAH, its small products' refills counted as they fall (see the
    module docstring), not amortised."""
    products = workload.secret_products_small
    if runtime != "spu-cheetah" or not products:
        return predicted.bytes
    per_product = calibration()["protocols"][runtime]["bytes"][
        "secret_products_small"]
    refills = (math.ceil(2 * products / TRIPLE_BATCH)
               - math.ceil(products / TRIPLE_BATCH))
    triples = per_product - OPENING_BYTES
    return predicted.bytes + (
        refills * TRIPLE_BATCH - products) * triples


@pytest.mark.parametrize("name,runtime", [
    (name, runtime) for name in OP_CLASSES for runtime in sorted(RUNTIMES)
])
def test_op_class_runs_in_every_runtime_as_predicted(name, runtime,
                                                     exported, pi_runtimes):
    version = exported(name)
    assert unsupported_ops(onnx.load(str(version / "model.onnx"))) == {}
    workload = onnx_workload(version / "model.onnx")
    entry = measure(version, runtime, images(1))
    assert entry["top1_agreement"] == 1.0
    assert entry["max_abs_error"] < 0.05, entry
    predicted = predict(workload, runtime)
    paid = predicted.nearest_paid(entry["rounds"])  # its whole refills
    assert one_image_bytes(paid, workload, runtime) == pytest.approx(
        entry["bytes"], rel=0.1), (paid.bytes, entry["bytes"])
    assert paid.rounds == pytest.approx(entry["rounds"], rel=0.15), (
        paid.rounds, entry["rounds"])
