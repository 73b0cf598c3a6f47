"""Export: TF-Serving SavedModel, ONNX, PI spec and cost report.

``export_all`` writes one version folder ``<base_dir>/<name>/<version>/``::

    saved_model.pb, variables/, assets/, fingerprint.pb   # TF-Serving
    model.keras        # the hardened Keras model
    model.onnx         # static batch 1, for PI frameworks
    pi_spec.json       # non-linear sites (+ pi_spec.*.kept.npy if large)
    pi_cost.txt        # cost report (python -m keras_autorep.report DIR)

TF-Serving reads only the SavedModel files and ignores the others.
"""

from keras_autorep.export.onnx import (
    DEFAULT_OPSET,
    export_onnx,
    onnx_relu_elements,
)
from keras_autorep.export.pi_spec import (
    SPEC_FILENAME,
    read_pi_spec,
    write_pi_spec,
)
from keras_autorep.export.saved_model import (
    DEFAULT_INPUT_SCALE,
    INPUT_NAME,
    OUTPUT_NAMES,
    SIGNATURE_KEY,
    ExportError,
    export_saved_model,
    exportable_model,
    relu_elements,
    write_saved_model,
    write_version,
)
from keras_autorep.pi.cost import cost_report

KERAS_FILENAME = "model.keras"
ONNX_FILENAME = "model.onnx"
COST_FILENAME = "pi_cost.txt"


def export_all(
    model,
    base_dir,
    name,
    version=None,
    overwrite=False,
    input_scale=DEFAULT_INPUT_SCALE,
    counting_convention=None,
    with_onnx=True,
    onnx_batch_size=1,
    opset=DEFAULT_OPSET,
):
    """Write SavedModel, ``.keras``, PI spec, ONNX and cost report together.

    Everything is written into a staging folder and moved into place at the
    end, so a failure leaves no partial version and earlier versions intact.

    Args:
        model: Keras model taking images scaled to [0, 1] and returning
            logits; hardened first (with a warning) if it holds selectors.
        base_dir, name, version, overwrite, input_scale: as in
            ``export_saved_model``.
        counting_convention: as in ``write_pi_spec``.
        with_onnx: also write ``model.onnx`` (needs tf2onnx).
        onnx_batch_size: batch size of the ONNX graph (1: fully static);
            ``None`` for a dynamic batch.
        opset: ONNX opset.

    Returns:
        ``pathlib.Path`` of the version folder.
    """
    model = exportable_model(model)

    def write(directory):
        write_saved_model(model, directory, input_scale)
        model.save(directory / KERAS_FILENAME)
        write_pi_spec(
            model, directory / SPEC_FILENAME, counting_convention, input_scale
        )
        if with_onnx:
            export_onnx(
                model,
                directory / ONNX_FILENAME,
                batch_size=onnx_batch_size,
                input_scale=input_scale,
                opset=opset,
            )
        report = cost_report(read_pi_spec(directory / SPEC_FILENAME))
        (directory / COST_FILENAME).write_text(report.text() + "\n")

    return write_version(base_dir, name, version, overwrite, write)


__all__ = [
    "COST_FILENAME",
    "DEFAULT_INPUT_SCALE",
    "DEFAULT_OPSET",
    "ExportError",
    "INPUT_NAME",
    "KERAS_FILENAME",
    "ONNX_FILENAME",
    "OUTPUT_NAMES",
    "SIGNATURE_KEY",
    "SPEC_FILENAME",
    "export_all",
    "export_onnx",
    "export_saved_model",
    "exportable_model",
    "onnx_relu_elements",
    "read_pi_spec",
    "relu_elements",
    "write_pi_spec",
]
