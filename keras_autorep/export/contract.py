"""The export contract: names, input checks and version folders.

The serving contract shared by the SavedModel, the ONNX graph and the PI
spec: one input ``image`` (raw pixel values 0..255 as ``float32``, NHWC,
the model's fixed ``H, W, C``), scaled by ``input_scale`` (default 1/255)
inside the graph, and the outputs ``logits``, ``probabilities`` and
``class_id``. Exports live in ``<base_dir>/<name>/<version>/`` (integer
versions; TF-Serving serves the highest), written atomically, one export of
a name at a time (a lock file ``<base_dir>/<name>/.lock``).

Only hardened (or plain) models are exported: a model still holding
training-time sites (``ReLUSelector``, ``SoftReLUMask``) is refused.
"""

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import keras
import numpy as np
from filelock import FileLock

from keras_autorep.backends import current
from keras_autorep.graph.sites import SELECTOR, SOFT_MASK, sites

DEFAULT_INPUT_SCALE = 1.0 / 255.0
INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "probabilities", "class_id")
SIGNATURE_KEY = "serving_default"
# The same function with the model compiled by XLA (faster on CPU; a
# TF-Serving server needs --xla_cpu_compilation_enabled=true to run it).
XLA_SIGNATURE_KEY = "serving_xla"
SAVED_MODEL_TAG = "serve"
KERAS_FILENAME = "model.keras"
ONNX_FILENAME = "model.onnx"
SPEC_FILENAME = "pi_spec.json"
DEFAULT_OPSET = 13  # ONNX opset, widely supported
LOCK_FILENAME = ".lock"


class ExportError(OSError):
    """The export directory cannot be written as asked.

    Raised before anything is moved into place, so earlier versions are left
    intact.
    """


def check_inference_model(model):
    """Raise unless ``model`` is an inference model: a Keras model without
    training-time sites (``TypeError`` names the first one)."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model, got {model!r}")
    training_sites = sites(model, (SELECTOR, SOFT_MASK))
    if training_sites:
        raise TypeError(
            f"harden() first: model {model.name!r} still holds the "
            f"training-time site {training_sites[0].layer.name!r} "
            f"({training_sites[0].kind}); export takes the inference model "
            "keras_autorep.harden(model, budget) returns"
        )


def exportable_model(model):
    """``model``, checked before anything is written: Keras runs on the
    TensorFlow backend, the model is an inference model
    (``check_inference_model``) with one fixed-shape input and a logits
    output (``input_shape``)."""
    current().check_exports()
    check_inference_model(model)
    input_shape(model)
    return model


def input_shape(model):
    """The fixed per-example input shape of a single-input logits model.

    Raises ``ValueError`` unless the model has one input with every
    non-batch dimension known and one rank-2 ``(batch, classes)`` output.
    """
    try:
        inputs, outputs = model.inputs, model.outputs
    except AttributeError:
        inputs = outputs = None
    if not inputs or len(inputs) != 1 or not outputs or len(outputs) != 1:
        raise ValueError(
            f"model {model.name!r}: export needs a Sequential or functional "
            "model built from one keras.Input with one output"
        )
    shape = tuple(inputs[0].shape[1:])
    if not shape or any(dim is None for dim in shape):
        raise ValueError(
            f"model {model.name!r}: export needs a fixed input shape (all "
            f"dimensions but the batch known), got {tuple(inputs[0].shape)}"
        )
    if len(outputs[0].shape) != 2:
        raise ValueError(
            f"model {model.name!r}: export expects logits of shape "
            f"(batch, classes), got {tuple(outputs[0].shape)}"
        )
    return tuple(int(dim) for dim in shape)


def check_input_scale(input_scale):
    scale = float(input_scale)
    if not np.isfinite(scale) or scale <= 0.0:
        raise ValueError(f"input_scale must be > 0, got {input_scale!r}")
    return scale


def _check_name(name):
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or "/" in name
        or os.sep in name
        or name.startswith(".")
    ):
        raise ValueError(
            f"name must be a plain folder name (no path separators, not "
            f"hidden), got {name!r}"
        )


def _check_version(version):
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)):
        raise ValueError(f"version must be an integer >= 0, got {version!r}")
    if version < 0:
        raise ValueError(f"version must be an integer >= 0, got {version!r}")
    return int(version)


def model_directory(base_dir, name):
    """``<base_dir>/<name>``, created if needed (else ``ExportError``)."""
    _check_name(name)
    base_dir = Path(base_dir)
    model_dir = base_dir / name
    try:
        for path in (base_dir, model_dir):
            if path.exists() and not path.is_dir():
                raise ExportError(
                    f"export path {path} exists and is not a folder"
                )
        model_dir.mkdir(parents=True, exist_ok=True)
    except ExportError:
        raise
    except OSError as error:
        raise ExportError(
            f"cannot create export folder {model_dir}: {error}"
        ) from error
    if not os.access(model_dir, os.W_OK | os.X_OK, effective_ids=True):
        raise ExportError(f"export folder {model_dir} is not writable")
    return model_dir


def versions(model_dir):
    """Sorted integer versions present in a model folder."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(
        int(child.name)
        for child in model_dir.iterdir()
        if child.is_dir() and child.name.isdigit()
    )


def write_version(base_dir, name, version, overwrite, write):
    """Write one version folder atomically and return its path.

    ``write(staging_dir, version_dir)`` fills a hidden staging folder beside
    the versions (TF-Serving ignores non-integer folder names); it is then
    renamed to ``version_dir``. On any failure the staging folder is removed
    and existing versions are left as they were. Exports of one name wait
    for each other (``LOCK_FILENAME`` in the name's folder); holding that
    lock, an export first removes the hidden folders an export killed before
    its end left behind.

    Args:
        base_dir, name: the export goes to ``<base_dir>/<name>/<version>``.
        version: integer version, or ``None`` for the next free one.
        overwrite: whether an existing version may be replaced.
        write: ``write(staging_dir, version_dir)``.
    """
    if version is not None:
        version = _check_version(version)
    model_dir = model_directory(base_dir, name)
    with FileLock(model_dir / LOCK_FILENAME):
        _remove_leftovers(model_dir)
        if version is None:
            version = (versions(model_dir) or [0])[-1] + 1
        target = model_dir / str(version)
        if target.exists() and not overwrite:
            raise ExportError(
                f"{target} already exists; pass overwrite=True to replace it "
                "or version=None for the next free version"
            )
        # Not mkdtemp: its 0700 mode would stay on the version folder and
        # keep a server running as another user out; mkdir honours the umask.
        staging = model_dir / f".{version}.staging-{uuid.uuid4().hex}"
        try:
            staging.mkdir()
        except OSError as error:
            raise ExportError(
                f"cannot write in {model_dir}: {error}") from error
        try:
            write(staging, target)
            _move_into_place(staging, target, overwrite)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _remove_leftovers(model_dir):
    """Remove the staging and retired folders of exports that died (only
    called under the lock, so no live export owns them)."""
    for child in model_dir.iterdir():
        if (child.is_dir() and child.name.startswith(".")
                and (".staging-" in child.name or ".old-" in child.name)):
            shutil.rmtree(child, ignore_errors=True)


def _move_into_place(staging, target, overwrite):
    if not target.exists():
        os.rename(staging, target)
        return
    if not overwrite:
        raise ExportError(f"{target} appeared during the export; not replaced")
    retired = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent)
    )
    os.rename(target, retired / "version")
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(retired / "version", target)
        raise
    finally:
        shutil.rmtree(retired, ignore_errors=True)


