"""SavedModel export for TF-Serving, and ReLU counting on exported graphs.

The ``serving_default`` signature (method ``tensorflow/serving/predict``)
takes one input, ``image``: raw pixel values 0..255 as ``float32``, NHWC,
with the model's fixed ``H, W, C`` and any batch. The served function
multiplies it by ``input_scale`` (default 1/255), runs the model (whose
outputs are logits) and returns:

* ``logits``: ``float32 (batch, classes)``;
* ``probabilities``: ``softmax(logits)``;
* ``class_id``: ``int64 (batch,)``, the argmax.

Signature functions do not enforce their declared input shape when they are
fed through a session (TF-Serving, the TF1 loader, ``saved_model_cli``), and
a wrong-shaped input to a convolution can abort the process under oneDNN, or
silently change the batch size of a reshape. So the served function checks
the request on the data path, before any model op runs: the shape
(``tf.ensure_shape``), at least one image, finite pixel values, and values
in ``[0, 1 / input_scale]`` (0..255 by default); a bad request fails with
``InvalidArgumentError`` naming the problem. The dtype is part of the graph:
a non-``float32`` input is rejected with ``InvalidArgumentError`` by the
runtime before the function starts. The ONNX export traces the same function
without the value checks (``checks=False``): a PI protocol would pay for
every comparison.

A second signature, ``serving_xla``, is the same function with the model
compiled by XLA (the request checks stay outside it): on CPU it brings a
hardened model's latency to that of the plain model (``hardened sites``
fuse into a few loops; see ``benchmarks/overhead.py``). ``tf.saved_model``
runs it as is; a TF-Serving server runs it when started with
``--xla_cpu_compilation_enabled=true`` and asked for
``"signature_name": "serving_xla"``; ``serving_default`` never needs XLA.
"""

import os

import numpy as np
import tensorflow as tf

from keras_autorep.adapters.tensorflow_graph import (
    frozen_graph_def,
    function_graph,
)
from keras_autorep.export.contract import (
    DEFAULT_INPUT_SCALE,
    INPUT_NAME,
    SIGNATURE_KEY,
    XLA_SIGNATURE_KEY,
    check_input_scale,
    exportable_model,
    input_shape,
    write_version,
)
from keras_autorep.backends import RELU, current, tf_graph_comparisons
from keras_autorep.graph import needs_model_xla
from keras_autorep.layers import sites_without_xla


def _checked_request(image, max_pixel):
    """``image``, once it holds at least one image of finite pixel values in
    ``[0, max_pixel]`` (``InvalidArgumentError`` otherwise); the checks are
    on the data path, so they run before anything that uses the result."""
    empty = tf.debugging.assert_positive(
        tf.shape(image)[0], message="image: empty batch, send at least one")
    with tf.control_dependencies([empty]):
        image = tf.debugging.assert_all_finite(
            image, f"image: pixel values must be finite numbers in "
            f"[0, {max_pixel:g}]")
    low, high = tf.reduce_min(image), tf.reduce_max(image)
    in_range = tf.debugging.Assert(
        tf.logical_and(low >= 0.0, high <= max_pixel),
        [f"image: pixel values must be in [0, {max_pixel:g}], got min", low,
         "max", high])
    with tf.control_dependencies([in_range]):
        return tf.identity(image)


def serving_function(model, input_scale=DEFAULT_INPUT_SCALE, batch_size=None,
                     checks=True, xla=False):
    """The ``tf.function`` served as ``serving_default``.

    Args:
        model: an inference (hardened) Keras model whose outputs are logits.
        input_scale: factor applied to the raw pixel input.
        batch_size: ``None`` for any batch, or a fixed batch size.
        checks: check the request's values (see module doc); the shape is
            checked either way.
        xla: XLA where the model asks for it (above); else none.

    Returns:
        A ``tf.function`` with an input signature named ``image`` that returns
        ``{"logits", "probabilities", "class_id"}``.
    """
    scale = check_input_scale(input_scale)
    max_pixel = float(np.float32(1.0 / scale))
    spec = tf.TensorSpec(
        (batch_size,) + input_shape(model), tf.float32, name=INPUT_NAME
    )

    def forward(images):
        if xla:
            return model(images, training=False)
        with sites_without_xla():
            return model(images, training=False)

    if xla and needs_model_xla(model):
        forward = tf.function(forward, jit_compile=True)

    @tf.function(input_signature=[spec])
    def serve(image):
        # On the data path, so it runs before any model op (see module doc).
        image = tf.ensure_shape(image, spec.shape)
        if checks:
            image = _checked_request(image, max_pixel)
        logits = tf.cast(forward(image * scale), tf.float32)
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
    current().check_exports()
    serve = serving_function(model, input_scale)
    serve_xla = serving_function(model, input_scale, xla=True)
    module = tf.Module()
    module.model_variables = [variable.value for variable in model.variables]
    module.serve = serve
    module.serve_xla = serve_xla
    tf.saved_model.save(
        module,
        str(directory),
        signatures={
            SIGNATURE_KEY: serve.get_concrete_function(),
            XLA_SIGNATURE_KEY: serve_xla.get_concrete_function(),
        },
    )


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
        model: inference Keras model (hardened or plain) taking images
            scaled to [0, 1] and returning logits.
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
        TypeError: the model still holds training-time sites.
    """
    model = exportable_model(model)
    return write_version(
        base_dir,
        name,
        version,
        overwrite,
        lambda folder, _: write_saved_model(model, folder, input_scale),
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
    re-imported for static shape inference. Then the ReLU ops whose input
    depends on the served input (``Relu``, ``Maximum`` with a zero
    constant; see ``keras_autorep.backends.tensorflow``) are summed,
    without the batch axis. A function freezing keeps (one compiled by XLA,
    as in ``serving_xla``) is counted inside, once per call.

    Args:
        source: a SavedModel folder, a ``ConcreteFunction``, or a
            ``tf.function`` with an input signature.
        signature: the signature to inspect in a SavedModel.

    Returns:
        ``int``; for a hardened model it equals
        ``count_relus(model).graph_relus``.
    """
    function, _owner = _concrete_function(source, signature)
    graph_def = frozen_graph_def(function)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    inputs = [op.outputs[0] for op in graph.get_operations()
              if op.type == "Placeholder"]
    library = {f.signature.name: f for f in graph_def.library.function}
    called = set()
    elements = _graph_relu_elements(graph, inputs, library, called)
    if set(library) - called:
        raise ValueError(
            "the graph keeps functions that are not plain calls (control "
            f"flow: {sorted(set(library) - called)}); relu_elements supports "
            "straight-line graphs and function calls only"
        )
    return elements


def _is_constant(tensor):
    while tensor.op.type == "Identity":
        tensor = tensor.op.inputs[0]
    return tensor.op.type == "Const"


def _graph_relu_elements(graph, inputs, library, called):
    """ReLU elements of ``graph`` and of the library functions it calls
    (whose names are added to ``called``)."""
    elements = sum(op.comparisons
                   for op in tf_graph_comparisons(graph, inputs)
                   if op.kind == RELU)
    for op in graph.get_operations():
        if op.type not in ("PartitionedCall", "StatefulPartitionedCall"):
            continue
        name = op.get_attr("f").name
        if name not in library:
            raise ValueError(
                f"{op.name} calls {name!r}, which the frozen graph does not "
                "hold"
            )
        called.add(name)
        body = function_graph(library[name],
                              [t.shape for t in op.inputs])
        # Frozen weights arrive as constants; everything else is data.
        live = [arg for arg, t in zip(body.inputs, op.inputs)
                if not _is_constant(t)]
        elements += _graph_relu_elements(body, live, library, called)
    return elements
