"""Checks before and after an export: a sane model, a truthful graph.

* ``check_outputs(model, calibration)``: on real images, every logit is
  finite and none is beyond ``calibration.max_abs_logit`` (by default 100
  times the largest logit of the all-ReLU teacher on the same images, that
  logit counted as at least 1);
  otherwise ``UnstableModelError``. Polynomial networks can overflow:
  such a model must not be published as a success.
* ``check_exported_relus(folder, count)``: the written SavedModel (both
  signatures) and ONNX graphs compute exactly the ReLU elements the count (and ``pi_spec.json``)
  claims; otherwise ``ExportMismatchError``.
* ``check_reloaded(folder, model, images)``: ``model.keras``, loaded
  again, computes the exported model's logits; otherwise
  ``ExportMismatchError``.
"""

import dataclasses

import numpy as np

from keras_autorep.export.contract import (
    KERAS_FILENAME,
    ONNX_FILENAME,
    SIGNATURE_KEY,
    XLA_SIGNATURE_KEY,
)

DEFAULT_LOGIT_FACTOR = 100.0
# The smallest teacher logit scale a bound is taken from: a classifier's
# logits are of order one or more once trained, and an untrained teacher's
# near-zero ones must not make every student "unstable".
MIN_LOGIT_SCALE = 1.0


class UnstableModelError(ValueError):
    """The model gives non-finite or exploding outputs on real images."""


class ExportMismatchError(RuntimeError):
    """An exported graph computes other ReLUs than the count claims, or
    the written Keras file another function than the exported model."""


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Real input images and the largest sane absolute logit on them.

    Attributes:
        images: a batch of images as the model takes them.
        max_abs_logit: the bound on ``|logit|``.
    """

    images: np.ndarray
    max_abs_logit: float

    @classmethod
    def from_teacher(cls, teacher, images, factor=DEFAULT_LOGIT_FACTOR):
        """``factor`` times the teacher's largest ``|logit|`` on
        ``images`` (at least ``MIN_LOGIT_SCALE``)."""
        logits = np.asarray(teacher.predict(images, verbose=0))
        if not np.all(np.isfinite(logits)):
            raise UnstableModelError(
                "the teacher itself gives non-finite logits on the "
                "calibration images"
            )
        return cls(images, factor * max(MIN_LOGIT_SCALE,
                                        float(np.max(np.abs(logits)))))


def check_outputs(model, calibration):
    """Raise ``UnstableModelError`` (one line, with the figures) unless
    ``model`` gives finite logits within the calibration bound."""
    logits = np.asarray(model.predict(calibration.images, verbose=0))
    finite = np.all(np.isfinite(logits), axis=-1)
    if not finite.all():
        raise UnstableModelError(
            f"model {model.name!r} gives non-finite logits on "
            f"{int(np.sum(~finite)):,} of {len(finite):,} calibration images"
        )
    largest = float(np.max(np.abs(logits)))
    if largest > calibration.max_abs_logit:
        raise UnstableModelError(
            f"model {model.name!r} gives logits up to {largest:.3g} on the "
            f"calibration images, beyond the bound "
            f"{calibration.max_abs_logit:.3g}"
        )
    return largest


def check_exported_relus(folder, count, with_onnx=True):
    """Raise ``ExportMismatchError`` unless the SavedModel (and ONNX) in
    ``folder`` compute ``count.graph_relus`` ReLU elements per example."""
    import tensorflow as tf

    from keras_autorep.export.onnx import onnx_relu_elements
    from keras_autorep.export.saved_model import relu_elements

    loaded = tf.saved_model.load(str(folder))  # once; alive while counting
    found = {f"SavedModel {key}": relu_elements(loaded.signatures[key])
             for key in (SIGNATURE_KEY, XLA_SIGNATURE_KEY)}
    if with_onnx:
        found["ONNX"] = onnx_relu_elements(folder / ONNX_FILENAME)
    for graph, elements in found.items():
        if elements != count.graph_relus:
            raise ExportMismatchError(
                f"the exported {graph} graph computes {elements:,} ReLU "
                f"elements per example, the count claims "
                f"{count.graph_relus:,}"
            )


def check_reloaded(folder, model, images, tolerance=1e-3):
    """Raise ``ExportMismatchError`` unless ``model.keras`` in ``folder``,
    loaded again, gives ``model``'s logits on ``images`` (within
    ``tolerance`` of the largest finite logit, at least 1; non-finite
    logits must be non-finite in both).

    A Keras file keeps variables and configs; a layer whose call reads
    another state (e.g. a ``Normalization`` whose statistics were assigned
    but never finalised) reloads as another function.
    """
    import keras

    reloaded = keras.saving.load_model(folder / KERAS_FILENAME)
    expected = np.asarray(model.predict(images, verbose=0))
    found = np.asarray(reloaded.predict(images, verbose=0))
    finite = np.isfinite(expected)
    scale = max(1.0, float(np.max(np.abs(expected[finite]), initial=0.0)))
    difference = np.abs(np.where(finite, expected - found, 0.0))
    if (not np.array_equal(finite, np.isfinite(found))
            or np.max(difference) > tolerance * scale):
        raise ExportMismatchError(
            f"the written {KERAS_FILENAME} computes other logits than "
            f"model {model.name!r}: largest difference "
            f"{np.max(difference):.3g} (logits up to {scale:.3g}), "
            f"{int(np.sum(finite != np.isfinite(found))):,} logits finite "
            f"in only one of them"
        )
