"""SavedModel export for TF-Serving, and ReLU counting on exported graphs.

An export lives in ``<base_dir>/<name>/<version>/`` (integer versions;
TF-Serving serves the highest). Its ``serving_default`` signature (method
``tensorflow/serving/predict``) takes one input, ``image``: raw pixel values
0..255 as ``float32``, NHWC, with the model's fixed ``H, W, C`` and any batch.
The served function multiplies it by ``input_scale`` (default 1/255), runs
the model (whose outputs are logits) and returns:

* ``logits``: ``float32 (batch, classes)``;
* ``probabilities``: ``softmax(logits)``;
* ``class_id``: ``int64 (batch,)``, the argmax.

Signature functions do not enforce their declared input shape when they are
fed through a session (TF-Serving, the TF1 loader, ``saved_model_cli``), and
a wrong-shaped input to a convolution can abort the process under oneDNN, or
silently change the batch size of a reshape. So the served function checks
the shape on the data path (``tf.ensure_shape``): a bad request fails with
``InvalidArgumentError`` before any model op runs. The dtype is part of the
graph: a non-``float32`` input is rejected with ``InvalidArgumentError`` by
the runtime before the function starts.
"""

import os
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2,
)

from keras_autorep.conversion import harden
from keras_autorep.counting import iter_layers
from keras_autorep.layers import ReLUSelector

DEFAULT_INPUT_SCALE = 1.0 / 255.0
INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "probabilities", "class_id")
SIGNATURE_KEY = "serving_default"
SAVED_MODEL_TAG = "serve"
RELU_OP_TYPES = ("Relu", "Relu6", "LeakyRelu")


class ExportError(OSError):
    """The export directory cannot be written as asked.

    Raised before anything is moved into place, so earlier versions are left
    intact.
    """


def check_tensorflow_backend():
    """Raise ``RuntimeError`` unless Keras runs on the TensorFlow backend."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            "exporting needs the TensorFlow backend (the graph is built with "
            f"TensorFlow), but Keras runs on {backend!r}: set "
            "KERAS_BACKEND=tensorflow, reload the model and export again"
        )


def inference_model(model):
    """The model to export: ``model``, hardened if it holds selectors.

    Args:
        model: a Keras model; if it still holds ``ReLUSelector`` layers it is
            hardened with ``keras_autorep.harden`` (masks as trained), with a
            warning.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model, got {model!r}")
    if any(isinstance(layer, ReLUSelector) for layer in iter_layers(model)):
        warnings.warn(
            f"model {model.name!r} still holds ReLUSelector layers; hardening "
            "it (keras_autorep.harden, masks as trained) before export. Call "
            "harden(model, budget) yourself to choose the budget.",
            stacklevel=3,
        )
        model = harden(model)
    return model


def exportable_model(model):
    """The model to export, checked before anything is written: Keras runs
    on the TensorFlow backend, ``model`` is hardened if it holds selectors
    (``inference_model``) and has one fixed-shape input and a logits output
    (``input_shape``)."""
    check_tensorflow_backend()
    model = inference_model(model)
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


def _check_input_scale(input_scale):
    scale = float(input_scale)
    if not np.isfinite(scale) or scale <= 0.0:
        raise ValueError(f"input_scale must be > 0, got {input_scale!r}")
    return scale


def serving_function(model, input_scale=DEFAULT_INPUT_SCALE, batch_size=None):
    """The ``tf.function`` served as ``serving_default``.

    Args:
        model: an inference (hardened) Keras model whose outputs are logits.
        input_scale: factor applied to the raw pixel input.
        batch_size: ``None`` for any batch, or a fixed batch size.

    Returns:
        A ``tf.function`` with an input signature named ``image`` that returns
        ``{"logits", "probabilities", "class_id"}``.
    """
    scale = _check_input_scale(input_scale)
    spec = tf.TensorSpec(
        (batch_size,) + input_shape(model), tf.float32, name=INPUT_NAME
    )

    @tf.function(input_signature=[spec])
    def serve(image):
        # On the data path, so it runs before any model op (see module doc).
        image = tf.ensure_shape(image, spec.shape)
        logits = tf.cast(model(image * scale, training=False), tf.float32)
        return {
            "logits": logits,
            "probabilities": tf.nn.softmax(logits),
            "class_id": tf.argmax(logits, axis=-1, output_type=tf.int64),
        }

    return serve


def write_saved_model(model, directory, input_scale=DEFAULT_INPUT_SCALE):
    """Write the SavedModel of an inference model into ``directory``.

    No versioning: ``export_saved_model`` and ``export_all`` call this on a
    staging directory. Args as in ``serving_function``.
    """
    check_tensorflow_backend()
    serve = serving_function(model, input_scale)
    module = tf.Module()
    module.model_variables = [variable.value for variable in model.variables]
    module.serve = serve
    tf.saved_model.save(
        module,
        str(directory),
        signatures={SIGNATURE_KEY: serve.get_concrete_function()},
    )


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

    ``write(staging_dir)`` fills a hidden staging folder beside the versions
    (TF-Serving ignores non-integer folder names); it is then renamed into
    place. On any failure the staging folder is removed and existing versions
    are left as they were.

    Args:
        base_dir, name: the export goes to ``<base_dir>/<name>/<version>``.
        version: integer version, or ``None`` for the next free one.
        overwrite: whether an existing version may be replaced.
        write: callable taking the staging folder path.
    """
    if version is not None:
        version = _check_version(version)
    model_dir = model_directory(base_dir, name)
    if version is None:
        version = (versions(model_dir) or [0])[-1] + 1
    target = model_dir / str(version)
    if target.exists() and not overwrite:
        raise ExportError(
            f"{target} already exists; pass overwrite=True to replace it or "
            "version=None for the next free version"
        )
    # Not mkdtemp: its 0700 mode would stay on the version folder and keep a
    # server running as another user out; mkdir honours the umask.
    staging = model_dir / f".{version}.staging-{uuid.uuid4().hex}"
    try:
        staging.mkdir()
    except OSError as error:
        raise ExportError(f"cannot write in {model_dir}: {error}") from error
    try:
        write(staging)
        _move_into_place(staging, target, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


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


def export_saved_model(
    model,
    base_dir,
    name,
    version=None,
    overwrite=False,
    input_scale=DEFAULT_INPUT_SCALE,
):
    """Export a model as a TF-Serving SavedModel version.

    Args:
        model: Keras model taking images scaled to [0, 1] and returning
            logits; hardened first (with a warning) if it holds selectors.
        base_dir: root folder, e.g. ``saved_models``.
        name: model name (TF-Serving ``--model_name``).
        version: integer version; ``None`` (default) takes the next free one.
        overwrite: replace an existing version (atomically: the new version
            is written aside and swapped in, the old one is kept on failure).
        input_scale: factor from raw pixels to the model's input scale.

    Returns:
        ``pathlib.Path`` of the version folder.

    Raises:
        ExportError: the folder cannot be written or the version exists.
        RuntimeError: Keras does not run on the TensorFlow backend.
    """
    model = exportable_model(model)
    return write_version(
        base_dir,
        name,
        version,
        overwrite,
        lambda directory: write_saved_model(model, directory, input_scale),
    )


def _concrete_function(source, signature):
    """``(function, owner)``: keep ``owner`` alive while using ``function``."""
    if isinstance(source, (str, os.PathLike)):
        loaded = tf.saved_model.load(str(source))
        if signature not in loaded.signatures:
            raise ValueError(
                f"{source} has no signature {signature!r} (it has "
                f"{sorted(loaded.signatures)})"
            )
        return loaded.signatures[signature], loaded
    if isinstance(source, tf.types.experimental.ConcreteFunction):
        return source, None
    if isinstance(source, tf.types.experimental.GenericFunction):
        return source.get_concrete_function(), None
    raise TypeError(
        "expected a SavedModel folder, a ConcreteFunction or a tf.function "
        f"with an input signature, got {source!r}"
    )


def relu_elements(source, signature=SIGNATURE_KEY):
    """ReLU elements per example that an exported TF graph computes.

    The function is frozen the way the TF runtime and tf2onnx see it
    (variables become constants, every nested function of the library is
    inlined at each call site, so a function called twice counts twice) and
    re-imported for static shape inference. Then the number of elements of
    the input of every ``Relu``, ``Relu6`` and ``LeakyRelu`` op, without the
    batch axis, is summed.

    Args:
        source: a SavedModel folder, a ``ConcreteFunction``, or a
            ``tf.function`` with an input signature.
        signature: the signature to inspect in a SavedModel.

    Returns:
        ``int``; for a hardened model it equals
        ``count_relus(model).kept + count_relus(model).uncounted``.
    """
    function, _owner = _concrete_function(source, signature)
    frozen = convert_variables_to_constants_v2(function)
    graph_def = frozen.graph.as_graph_def()
    if graph_def.library.function:
        raise ValueError(
            "the graph keeps functions that could not be inlined (control "
            f"flow: {[f.signature.name for f in graph_def.library.function]});"
            " relu_elements supports straight-line graphs only"
        )
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    total = 0
    for op in graph.get_operations():
        if op.type not in RELU_OP_TYPES:
            continue
        shape = op.inputs[0].shape
        if shape.rank is None or not shape[1:].is_fully_defined():
            raise ValueError(
                f"{op.type} op {op.name!r} has input shape {shape}: the "
                "per-example size must be known"
            )
        total += int(np.prod(shape[1:].as_list()))
    return total
