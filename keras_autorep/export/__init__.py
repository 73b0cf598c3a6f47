"""Export: TF-Serving SavedModel, Keras file, ONNX and PI spec.

``export_all`` writes one version folder ``<base_dir>/<name>/<version>/``::

    saved_model.pb, variables/, assets/, fingerprint.pb   # TF-Serving
    model.keras        # the hardened Keras model
    model.onnx         # static batch 1, for PI frameworks
    pi_spec.json       # ReLU sites (+ pi_spec.*.kept.npy if large)

plus whatever ``extras`` writes (the recipes add the PI cost report, the
run report and plots). TF-Serving reads only the SavedModel files and
ignores the others. Export takes an inference model only: a model that
still holds selectors raises ``TypeError`` (``harden`` it first). With a
``Calibration`` the model must give finite, bounded logits on real images
first (``UnstableModelError``), and the written graphs must compute the
ReLUs the spec claims, and ``model.keras`` loaded again the model's logits
(``ExportMismatchError``): nothing is published otherwise.

Importing this package does not import TensorFlow: the contract, version
folders and PI spec work under any backend; the SavedModel and ONNX writers
are loaded on first use.
"""

import importlib

import numpy as np

from keras_autorep.export.contract import (
    DEFAULT_INPUT_SCALE,
    DEFAULT_OPSET,
    INPUT_NAME,
    KERAS_FILENAME,
    ONNX_FILENAME,
    OUTPUT_NAMES,
    SIGNATURE_KEY,
    SPEC_FILENAME,
    ExportError,
    exportable_model,
    input_shape,
    versions,
    write_version,
)
from keras_autorep.export.checks import (
    Calibration,
    ExportMismatchError,
    UnstableModelError,
    check_exported_relus,
    check_outputs,
    check_reloaded,
)
from keras_autorep.export.pi_spec import (
    count_from_spec,
    read_pi_spec,
    spec_from_count,
    write_pi_spec,
)
from keras_autorep.graph.counting import counted

# Names of the TensorFlow / tf2onnx modules, imported when first asked for.
_LAZY = {
    "export_saved_model": "saved_model",
    "relu_elements": "saved_model",
    "write_saved_model": "saved_model",
    "export_onnx": "onnx",
    "onnx_relu_elements": "onnx",
}
# Images on which the written model.keras must give the model's logits.
RELOAD_CHECK_IMAGES = 16


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f"keras_autorep.export.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    calibration=None,
    extras=None,
    count=None,
):
    """Write SavedModel, ``.keras``, PI spec and ONNX together.

    Everything is written into a staging folder and moved into place at the
    end, so a failure leaves no partial version and earlier versions intact.

    Args:
        model: inference Keras model (hardened or plain) taking images
            scaled to [0, 1] and returning logits.
        base_dir, name, version, overwrite, input_scale: as in
            ``export_saved_model``.
        counting_convention: as in ``write_pi_spec``.
        with_onnx: also write ``model.onnx`` (needs tf2onnx).
        onnx_batch_size: batch size of the ONNX graph (1: fully static);
            ``None`` for a dynamic batch.
        opset: ONNX opset.
        calibration: optional ``Calibration`` (real images and a logit
            bound) the model must pass before anything is written.
        extras: optional ``extras(folder, version_dir)`` that writes more
            files into the staging ``folder`` before it becomes
            ``version_dir`` (the written files are there: e.g. price them
            with ``keras_autorep.pi.cost_report(folder)``, which reads
            ``model.onnx`` instead of converting the model again).
        count: ``count_relus(model)`` if the caller has it (else computed
            once); the PI spec and the graph checks use it.

    Returns:
        ``pathlib.Path`` of the version folder.

    Raises:
        UnstableModelError: the model fails the calibration check.
        ExportMismatchError: a written graph computes other ReLUs than
            ``count_relus(model)`` claims.
    """
    from keras_autorep.export.onnx import export_onnx
    from keras_autorep.export.saved_model import write_saved_model

    model = exportable_model(model)
    if calibration is not None:
        check_outputs(model, calibration)
    count = counted(model, count)
    reload_images = (
        calibration.images[:RELOAD_CHECK_IMAGES] if calibration is not None
        else np.random.default_rng(0).uniform(
            0, 1, (RELOAD_CHECK_IMAGES,) + input_shape(model)
        ).astype("float32"))

    def write(directory, target):
        write_saved_model(model, directory, input_scale)
        model.save(directory / KERAS_FILENAME)
        write_pi_spec(
            model, directory / SPEC_FILENAME, counting_convention, input_scale,
            count=count,
        )
        if with_onnx:
            export_onnx(
                model,
                directory / ONNX_FILENAME,
                batch_size=onnx_batch_size,
                input_scale=input_scale,
                opset=opset,
            )
        check_exported_relus(directory, count, with_onnx)
        check_reloaded(directory, model, reload_images)
        if extras is not None:
            extras(directory, target)

    return write_version(base_dir, name, version, overwrite, write)


__all__ = [
    "Calibration",
    "DEFAULT_INPUT_SCALE",
    "DEFAULT_OPSET",
    "ExportError",
    "ExportMismatchError",
    "INPUT_NAME",
    "KERAS_FILENAME",
    "ONNX_FILENAME",
    "OUTPUT_NAMES",
    "SIGNATURE_KEY",
    "SPEC_FILENAME",
    "UnstableModelError",
    "check_outputs",
    "check_reloaded",
    "count_from_spec",
    "export_all",
    "export_onnx",
    "export_saved_model",
    "exportable_model",
    "onnx_relu_elements",
    "read_pi_spec",
    "relu_elements",
    "spec_from_count",
    "versions",
    "write_pi_spec",
    "write_saved_model",
    "write_version",
]
