"""Export: SavedModel for TF-Serving, ONNX, ReLU-only-where-kept, PI spec,
the export contract and the ``pi cost`` command on an export."""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf

import keras_autorep as ka
from keras_autorep import export as export_package
from keras_autorep.export import (
    ExportError,
    export_all,
    export_onnx,
    export_saved_model,
    onnx_relu_elements,
    read_pi_spec,
    relu_elements,
    write_pi_spec,
)
from keras_autorep.export import contract
from keras_autorep.export.saved_model import serving_function
from keras_autorep.pi.__main__ import main as pi_main

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="export needs the TensorFlow backend",
)

SAVED_MODEL_CLI = Path(sys.executable).parent / "saved_model_cli"
SUBPROCESS_ENV = dict(
    os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow"
)


def sequential_model():
    """With the constant Normalization layer the recipe models have."""
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Normalization(mean=[0.5] * 3, variance=[0.06] * 3),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(4, 3, padding="same"),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(5),
        ]
    )


def residual_model():
    """Functional, with a skip, a plain ReLU that hardening leaves as it is
    (``stem_relu``, every element kept), selector sites and a polynomial
    site."""
    inputs = keras.Input((8, 8, 3))
    stem = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    stem = keras.layers.ReLU(name="stem_relu")(stem)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(stem)
    x = ka.ReLUSelector(name="conv_relu")(x)
    x = keras.layers.Conv2D(4, 3, padding="same")(x)
    x = ka.ReLUSelector(name="add_relu")(keras.layers.Add()([x, stem]))
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same")(x)
    x = ka.PolynomialActivation(name="poly")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(5)(x))
    rng = np.random.default_rng(1)
    poly = model.get_layer("poly")
    poly.assign_coefficients(rng.normal(0.3, 0.1, poly.coefficients.shape))
    return model


def hardened(model, keep=0.3, seed=0, xla="model"):
    """Selectors with random masks keeping about ``keep``, then harden
    (a model without selectors gets them from ``replace_relus`` first;
    ``xla`` as in ``harden``)."""
    rng = np.random.default_rng(seed)
    selected = model if ka.selectors(model) else ka.replace_relus(model)
    for selector in ka.selectors(selected):
        mask = rng.random(selector.mask.shape) < keep
        selector.mask.assign(mask.astype("float32"))
        coefficients = rng.normal(0.3, 0.1, selector.coefficients.shape)
        selector.polynomial.assign_coefficients(coefficients)
    return ka.harden(selected, xla=xla)


def pixels(batch, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((batch, 8, 8, 3)) * 255).astype("float32")


def keras_outputs(model, images):
    logits = keras.ops.convert_to_numpy(model(images / 255.0))
    return {
        "logits": logits,
        "probabilities": keras.ops.convert_to_numpy(
            keras.ops.softmax(logits)
        ),
        "class_id": logits.argmax(-1),
    }


def assert_outputs_close(actual, expected):
    for key in ("logits", "probabilities"):
        np.testing.assert_allclose(actual[key], expected[key], atol=1e-4)
    np.testing.assert_array_equal(actual["class_id"], expected["class_id"])


def run_onnx(path, images):
    session = onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"]
    )
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {"image": images})))


@pytest.fixture(scope="module")
def tiny():
    plain = sequential_model()
    return plain, hardened(plain)


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    return export_all(tiny[1], tmp_path_factory.mktemp("saved"), "tiny")


def copy_of(version_dir, tmp_path):
    """A copy of an export's model folder (tests that write into an export
    leave the shared one alone); returns the copied version folder."""
    model_dir = tmp_path / version_dir.parent.name
    shutil.copytree(version_dir.parent, model_dir)
    return model_dir / version_dir.name


def test_export_all_writes_one_version_folder(exported, tmp_path):
    assert exported.name == "1"
    names = {path.name for path in exported.iterdir()}
    assert {
        "saved_model.pb",
        "variables",
        "model.keras",
        "model.onnx",
        "pi_spec.json",
    } <= names
    # The PI cost report is no longer part of a plain export: the recipes
    # add it (keras_autorep.recipes.reporting.publish), and
    # ``python -m keras_autorep.pi cost DIR --write`` writes it.
    assert "pi_cost.txt" not in names
    hidden = [p.name for p in exported.parent.iterdir() if p.name[0] == "."]
    assert hidden == [contract.LOCK_FILENAME]  # no staging folder left
    version = copy_of(exported, tmp_path)
    assert pi_main(["cost", str(version), "--write"]) == 0
    assert "Garimella" in (version / "pi_cost.txt").read_text()
    # Modes follow the umask (a server may run as another user).
    umask = os.umask(0)
    os.umask(umask)
    assert exported.stat().st_mode & 0o777 == 0o777 & ~umask
    for name in ("saved_model.pb", "model.onnx", "pi_spec.json"):
        assert (exported / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_report_command_on_export(tiny, exported, tmp_path, capsys):
    spec = read_pi_spec(exported)
    computed = spec["totals"]["relu_kept"]
    assert computed == ka.count_relus(tiny[1]).kept
    assert spec["totals"] == ka.count_relus(tiny[1]).totals()
    assert relu_elements(exported) == computed
    assert onnx_relu_elements(exported / "model.onnx") == computed
    version = copy_of(exported, tmp_path)
    assert pi_main(["cost", str(version.parent), "--write"]) == 0  # highest
    text = capsys.readouterr().out
    assert str(version / "pi_spec.json") in text
    assert ka.count_relus(tiny[1]).table() in text
    assert (version / "pi_cost.txt").read_text().strip() in text


def test_keras_file_round_trips(tiny, exported):
    reloaded = keras.saving.load_model(exported / "model.keras")
    images = pixels(2)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(images / 255.0)),
        keras_outputs(tiny[1], images)["logits"],
        atol=1e-6,
    )


def run_tool(*command):
    """Run a command-line tool quietly on the TensorFlow backend."""
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        env=SUBPROCESS_ENV,
        timeout=120,
    )


def test_saved_model_cli_show_and_run(exported):
    show = run_tool(SAVED_MODEL_CLI, "show", "--dir", exported, "--all")
    assert show.returncode == 0, show.stderr
    text = show.stdout
    assert "signature_def['serving_default']" in text
    assert "inputs['image']" in text
    assert "shape: (-1, 8, 8, 3)" in text
    for output in ("probabilities", "class_id", "logits"):
        assert f"outputs['{output}']" in text
    assert "DT_INT64" in text
    assert "Method name is: tensorflow/serving/predict" in text
    run = run_tool(
        SAVED_MODEL_CLI,
        "run",
        "--dir",
        exported,
        "--tag_set",
        "serve",
        "--signature_def",
        "serving_default",
        # TF 2.21's saved_model_cli takes Python literals only (no np.*).
        "--input_exprs",
        f"image={np.full((1, 8, 8, 3), 128.0).tolist()}",
    )
    assert run.returncode == 0, run.stderr
    assert "probabilities" in run.stdout and "class_id" in run.stdout


def test_tf1_session_loader_matches_keras(tiny, exported):
    images = pixels(3)
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(
            session, ["serve"], str(exported)
        )
        signature = meta.signature_def["serving_default"]
        assert signature.method_name == "tensorflow/serving/predict"
        fetches = {
            key: graph.get_tensor_by_name(info.name)
            for key, info in signature.outputs.items()
        }
        image = graph.get_tensor_by_name(signature.inputs["image"].name)
        outputs = session.run(fetches, {image: images})
    assert_outputs_close(outputs, keras_outputs(tiny[1], images))


@pytest.mark.parametrize("signature", ["serving_default", "serving_xla"])
def test_tf2_load_matches_keras(tiny, exported, signature):
    images = pixels(3, seed=1)
    serve = tf.saved_model.load(str(exported)).signatures[signature]
    outputs = {k: v.numpy() for k, v in serve(image=images).items()}
    assert outputs["class_id"].dtype == np.int64
    assert_outputs_close(outputs, keras_outputs(tiny[1], images))


BAD_REQUESTS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    directory, signature = sys.argv[1:3]
    shapes = [(1, 9, 8, 3), (1, 16, 8, 3), (8, 8, 3), (1, 1, 8, 8, 3),
              (1, 8, 8, 4)]
    # Right shape, bad values: non-finite, out of 0..255, an empty batch.
    values = [np.full((2, 8, 8, 3), v) for v in
              (np.nan, np.inf, -np.inf, -1.0, 255.5, 1e9)]
    values[0][0] = 0.0  # NaN in the second image only
    values.append(np.zeros((0, 8, 8, 3)))
    results, messages = [], []

    def attempt(run):
        try:
            run()
            results.append("ok")
        except Exception as error:
            results.append(type(error).__name__)
            messages.append(getattr(error, "message", str(error)))

    serve = tf.saved_model.load(directory).signatures[signature]
    for shape in shapes:
        attempt(lambda: serve(image=tf.zeros(shape)))
    for dtype in (tf.float64, tf.uint8):
        attempt(lambda: serve(image=tf.zeros((1, 8, 8, 3), dtype)))
    for value in values:
        attempt(lambda: serve(image=tf.constant(value, tf.float32)))
    for edge in (0.0, 255.0):  # the ends of the range are served
        attempt(lambda: serve(image=tf.fill((1, 8, 8, 3), edge)))
    # A session fed without the Python-side shape check, as in TF-Serving.
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        unchecked = tf.compat.v1.placeholder(tf.float32, None)
        meta = tf.compat.v1.saved_model.loader.load(
            session, ["serve"], directory,
            input_map={f"{signature}_image:0": unchecked})
        name = meta.signature_def[signature].outputs["logits"].name
        logits = graph.get_tensor_by_name(name)
        for value in [np.zeros(shape) for shape in shapes] + values:
            attempt(lambda: session.run(logits, {unchecked: value}))
    print(json.dumps([results, messages]))
    """
)


@pytest.mark.parametrize("signature", ["serving_default", "serving_xla"])
def test_bad_requests_raise_invalid_argument(exported, signature):
    # In a subprocess: an unchecked bad conv input may abort the process.
    result = run_tool(sys.executable, "-c", BAD_REQUESTS, str(exported),
                      signature)
    assert result.returncode == 0, result.stderr[-2000:]
    results, messages = json.loads(result.stdout.strip().splitlines()[-1])
    bad = "InvalidArgumentError"
    assert results == [bad] * 14 + ["ok"] * 2 + [bad] * 12
    # Messages of the value errors: signature call, then session.
    expected = (["image: pixel values must be finite numbers in [0, 255]"] * 3
                + ["image: pixel values must be in [0, 255], got min"] * 3
                + ["image: empty batch"])
    for message, text in zip(messages[7:14] + messages[19:], expected * 2):
        assert text in message, (text, message)


def xla_marked_ops(signature):
    """Ops of a signature's graph and of the functions it calls that an
    ``xla_scope`` marked for XLA."""
    graph_def = signature.graph.as_graph_def()
    nodes = list(graph_def.node) + [node for function in
                                    graph_def.library.function
                                    for node in function.node_def]
    return sum("_XlaCompile" in node.attr for node in nodes)


def test_sites_compiled_alone_stay_out_of_serving_default(tmp_path):
    """``harden(xla="sites")``: ``serving_xla`` compiles the sites alone;
    ``serving_default`` must run where XLA does not (a TF-Serving server
    without ``--xla_cpu_compilation_enabled``) and has no XLA op."""
    model = hardened(sequential_model(), xla="sites")
    assert any(layer.xla for layer in model.layers
               if isinstance(layer, ka.PartialReLU))
    version = export_all(model, tmp_path, "sites")  # counts and reload
    loaded = tf.saved_model.load(str(version))
    images = pixels(3, seed=2)
    for key, marked in (("serving_default", False), ("serving_xla", True)):
        serve = loaded.signatures[key]
        assert (xla_marked_ops(serve) > 0) is marked, key
        outputs = {k: v.numpy() for k, v in serve(image=images).items()}
        assert_outputs_close(outputs, keras_outputs(model, images))


def test_onnx_graph_has_no_request_checks(exported):
    """The checks cost comparisons a PI protocol would pay for: the ONNX
    graph has the model's ops only."""
    ops = {node.op_type for node in
           onnx.load(str(exported / "model.onnx")).graph.node}
    checks = {"IsNaN", "IsInf", "Less", "LessOrEqual", "Greater",
              "GreaterOrEqual", "Equal", "ReduceMin", "ReduceMax", "And",
              "If", "Not"}
    assert ops and not ops & checks


def test_relu_elements_counts_only_kept(tiny, exported, tmp_path):
    plain, model = tiny
    count = ka.count_relus(model)
    assert 0 < count.kept < count.total
    assert relu_elements(exported) == count.kept
    assert relu_elements(exported, "serving_xla") == count.kept
    assert relu_elements(serving_function(model)) == count.kept
    plain_dir = export_saved_model(plain, tmp_path, "plain")
    assert relu_elements(plain_dir) == ka.count_relus(plain).total == 512


def assert_pi_ready(path):
    """The ONNX graph CrypTen 0.4.1 loads as it is (docs/export.md)."""
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    graph = proto.graph
    assert [output.name for output in graph.output] == ["logits"]
    needed = {"logits"}
    for node in reversed(graph.node):
        assert needed.intersection(node.output), f"dead node {node.name}"
        needed.update(node.input)
    assert {i.name for i in graph.initializer} <= needed
    values = list(graph.value_info) + list(graph.input) + list(graph.output)
    for value in values:
        dims = value.type.tensor_type.shape.dim
        assert all(dim.HasField("dim_value") for dim in dims), value.name
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    integer_types = (onnx.TensorProto.INT32, onnx.TensorProto.INT64)
    assert not [t for t in graph.initializer if t.data_type in integer_types]
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in values}
    constants = {node.output[0] for node in graph.node
                 if node.op_type == "Constant"}
    for node in graph.node:
        attributes = {a.name: onnx.helper.get_attribute_value(a)
                      for a in node.attribute}
        assert node.op_type not in ("Squeeze", "Unsqueeze", "Softmax",
                                    "ArgMax", "Pad", "Erf", "Erfc", "Neg")
        inputs = [name for name in node.input if name]
        assert len(set(inputs)) == len(inputs), node.name
        if node.op_type == "Gemm":
            assert {"alpha", "beta", "transA", "transB"} <= set(attributes)
        if node.op_type == "Conv":
            assert {"strides", "pads", "dilations"} <= set(attributes)
            pads = attributes["pads"]
            assert pads[:2] == pads[2:], node.name
            assert attributes.get("auto_pad", b"NOTSET") == b"NOTSET"
        if node.op_type == "Clip":
            assert set(inputs[1:]) <= constants, node.name
        if node.op_type in ("Relu", "Mul"):
            assert np.prod(shapes.get(node.input[0], [1])) > 0, node.name
    return graph


def test_onnx_static_batch_for_pi(tiny, exported):
    model = tiny[1]
    path = exported / "model.onnx"
    images = pixels(1, seed=2)
    outputs = run_onnx(path, images)
    assert list(outputs) == ["logits"]
    np.testing.assert_allclose(outputs["logits"],
                               keras_outputs(model, images)["logits"],
                               atol=1e-4)
    assert onnx_relu_elements(path) == ka.count_relus(model).kept
    assert_pi_ready(path)


def test_stride_two_same_convolutions_get_symmetric_padding(tmp_path):
    """TensorFlow pads ``same`` stride-2 convolutions on even inputs after
    only; the export keeps the result exact with symmetric Conv pads."""
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, strides=2, padding="same"),
        keras.layers.ReLU(),
        keras.layers.Conv2D(5, 4, strides=2, padding="same"),
        keras.layers.Flatten(),
        keras.layers.Dense(3),
    ])
    path = export_onnx(model, tmp_path / "strided.onnx", batch_size=1)
    graph = assert_pi_ready(path)
    assert "Concat" in {node.op_type for node in graph.node}
    images = pixels(1, seed=6)
    np.testing.assert_allclose(run_onnx(path, images)["logits"],
                               keras_outputs(model, images)["logits"],
                               atol=1e-4)


def test_applications_ops_become_pi_ready(tmp_path):
    """ZeroPadding2D before a stride-2 depthwise convolution (MobileNet),
    a padded 3x3 max-pooling (ResNet), ReLU6 and exact GELU: no Pad, no
    Erf, public Clip bounds; GELU within its logistic form's error."""
    L = keras.layers
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        L.Conv2D(4, 3, padding="same"), L.ReLU(6.0),
        L.ZeroPadding2D(((0, 1), (0, 1))),
        L.DepthwiseConv2D(3, strides=2), L.Activation("gelu"),
        L.ZeroPadding2D(1), L.MaxPooling2D(3, strides=2),
        L.Flatten(), L.Dense(3),
    ])
    path = export_onnx(model, tmp_path / "applications.onnx", batch_size=1)
    graph = assert_pi_ready(path)
    ops = {node.op_type for node in graph.node}
    assert {"Clip", "Sigmoid", "MaxPool", "Concat"} <= ops
    images = pixels(1, seed=7)
    expected = keras_outputs(model, images)["logits"]
    np.testing.assert_allclose(run_onnx(path, images)["logits"], expected,
                               atol=2e-3 * max(1.0, np.abs(expected).max()))


def test_onnx_dynamic_batch_and_output_subset(tiny, tmp_path):
    model = tiny[1]
    path = export_onnx(model, tmp_path / "dynamic.onnx",
                       outputs=("logits", "probabilities", "class_id"))
    images = pixels(3, seed=3)
    assert_outputs_close(run_onnx(path, images), keras_outputs(model, images))
    logits_only = export_onnx(model, tmp_path / "logits.onnx", batch_size=1)
    assert list(run_onnx(logits_only, images[:1])) == ["logits"]
    with pytest.raises(ValueError, match="outputs"):
        export_onnx(model, tmp_path / "x.onnx", outputs=("softmax",))


def test_residual_model_with_a_plain_relu_and_polynomial(tmp_path):
    model = hardened(residual_model(), keep=0.4, seed=4)
    count = ka.count_relus(model)
    # The plain ReLU left in the inference model is counted like the rest
    # (there are no "uncounted" ReLUs): all its 256 elements are kept.
    rows = {row.layer: row for row in count.rows}
    assert (rows["stem_relu"].kind, rows["stem_relu"].kept) == ("ReLU", 256)
    assert rows["stem_relu"].total == 256
    assert 256 < count.kept < count.total
    directory = export_saved_model(model, tmp_path, "residual")
    onnx_path = export_onnx(model, tmp_path / "residual.onnx",
                            outputs=("logits", "probabilities", "class_id"))
    assert relu_elements(directory) == count.kept
    assert onnx_relu_elements(onnx_path) == count.kept
    images = pixels(2, seed=4)
    expected = keras_outputs(model, images)
    serve = tf.saved_model.load(str(directory)).signatures["serving_default"]
    assert_outputs_close(
        {k: v.numpy() for k, v in serve(image=images).items()}, expected
    )
    assert_outputs_close(run_onnx(onnx_path, images), expected)


def test_onnx_traces_a_gather_form_copy_nested_models_included(tiny,
                                                               tmp_path):
    """The ONNX graph of a hardened model, here nested in another one, has
    no scatter op (``gather_form``); the model itself keeps its serving
    form."""
    wrapper = keras.Sequential([keras.Input((8, 8, 3)), tiny[1]])
    path = export_onnx(wrapper, tmp_path / "nested.onnx", batch_size=1)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Gather" in ops and not any("Scatter" in op for op in ops)
    assert onnx_relu_elements(path) == ka.count_relus(wrapper).kept
    images = pixels(1, seed=7)
    np.testing.assert_allclose(run_onnx(path, images)["logits"],
                               keras_outputs(wrapper, images)["logits"],
                               atol=1e-4)
    partial = [layer for layer in tiny[1].layers
               if isinstance(layer, ka.PartialReLU)]
    assert partial and {layer.merge for layer in partial} == {"scatter"}
    assert ka.graph.gather_form(tiny[0]) is tiny[0]  # nothing to change


@pytest.mark.parametrize("keep", [0.0, 1.0], ids=["budget0", "all_kept"])
def test_no_relu_kept_and_all_kept(keep, tmp_path):
    model = hardened(sequential_model(), keep=keep)
    count = ka.count_relus(model)
    assert count.kept == (0 if keep == 0.0 else count.total)
    onnx_path = export_onnx(model, tmp_path / "edge.onnx", batch_size=1)
    assert relu_elements(serving_function(model)) == count.kept
    assert onnx_relu_elements(onnx_path) == count.kept
    images = pixels(1, seed=5)
    np.testing.assert_allclose(run_onnx(onnx_path, images)["logits"],
                               keras_outputs(model, images)["logits"],
                               atol=1e-4)
    # Only the branch the sites need: no Relu on an empty tensor and, when
    # every position keeps its ReLU, the plain model's graph.
    ops = sorted(node.op_type for node in assert_pi_ready(onnx_path).node)
    assert "Gather" not in ops
    if keep == 0.0:
        assert "Relu" not in ops
    else:
        plain = export_onnx(sequential_model(), tmp_path / "plain.onnx",
                            batch_size=1)
        assert ops == sorted(n.op_type for n in onnx.load(str(plain)).graph.node)


def test_versions_and_overwrite(tiny, tmp_path, monkeypatch):
    model = tiny[1]
    assert export_saved_model(model, tmp_path, "m").name == "1"
    second = export_saved_model(model, tmp_path, "m")
    assert second.name == "2"
    marker = second / "marker"
    marker.write_text("earlier export")
    with pytest.raises(ExportError, match="already exists"):
        export_saved_model(model, tmp_path, "m", version=2)

    def failing_save(*args, **kwargs):
        raise RuntimeError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(tf.saved_model, "save", failing_save)
        with pytest.raises(RuntimeError, match="disk full"):
            export_saved_model(model, tmp_path, "m", version=2, overwrite=True)
    assert marker.read_text() == "earlier export"
    assert (second / "saved_model.pb").is_file()
    assert export_saved_model(model, tmp_path, "m", version=2, overwrite=True)
    assert not marker.exists() and (second / "saved_model.pb").is_file()
    assert export_saved_model(model, tmp_path, "m", version=7).name == "7"
    assert contract.versions(tmp_path / "m") == [1, 2, 7]
    assert [p.name for p in (tmp_path / "m").iterdir()
            if not p.name.isdigit()] == [contract.LOCK_FILENAME]


def test_export_errors(tiny, tmp_path, monkeypatch):
    model = tiny[1]
    base_file = tmp_path / "file"
    base_file.write_text("")
    with pytest.raises(ExportError, match="not a folder"):
        export_saved_model(model, base_file, "m")
    (tmp_path / "taken").write_text("")
    with pytest.raises(ExportError, match="not a folder"):
        export_saved_model(model, tmp_path, "taken")
    assert issubclass(ExportError, OSError)
    for name in ("", "..", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="name"):
            export_saved_model(model, tmp_path, name)
    with pytest.raises(ValueError, match="version"):
        export_saved_model(model, tmp_path, "m", version=-1)
    unknown = keras.Sequential(
        [keras.Input((None, None, 3)), keras.layers.Conv2D(2, 3)]
    )
    with pytest.raises(ValueError, match="fixed input shape"):
        export_saved_model(unknown, tmp_path, "m")
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(RuntimeError, match="TensorFlow backend"):
        export_saved_model(model, tmp_path, "m")
    assert not (tmp_path / "m").exists()


@contextlib.contextmanager
def without_write_permission(folder):
    """``folder`` read-only; as root, also run as ``nobody`` meanwhile."""
    mode = folder.stat().st_mode
    folder.chmod(0o555)
    root = os.geteuid() == 0
    try:
        if root:
            os.seteuid(65534)  # root ignores permission bits
        yield
    finally:
        if root:
            os.seteuid(0)
        folder.chmod(mode)


def test_unwritable_folder_keeps_earlier_versions(tiny):
    model = tiny[1]
    # Not under pytest's tmp_path: it is private to the user running pytest.
    with tempfile.TemporaryDirectory() as base:
        base = Path(base)
        base.chmod(0o755)
        first = export_saved_model(model, base, "m")
        before = sorted(p.relative_to(base) for p in base.rglob("*"))
        with without_write_permission(base / "m"):
            with pytest.raises(ExportError, match="not writable"):
                export_saved_model(model, base, "m")
            with pytest.raises(ExportError, match="not writable"):
                export_all(model, base, "m", version=1, overwrite=True)
        with without_write_permission(base):
            with pytest.raises(ExportError, match="cannot create"):
                export_saved_model(model, base, "other")
        assert sorted(p.relative_to(base) for p in base.rglob("*")) == before
        serve = tf.saved_model.load(str(first)).signatures["serving_default"]
        images = pixels(1)
        assert_outputs_close(
            {k: v.numpy() for k, v in serve(image=images).items()},
            keras_outputs(model, images),
        )


def test_selector_model_is_refused_until_hardened(tiny, tmp_path):
    selected = ka.replace_relus(tiny[0])
    for selector in ka.selectors(selected):
        selector.mask.assign(np.zeros(selector.mask.shape, "float32"))
    for export in (
        lambda: export_saved_model(selected, tmp_path, "selected"),
        lambda: export_all(selected, tmp_path, "selected"),
        lambda: export_onnx(selected, tmp_path / "selected.onnx"),
        lambda: write_pi_spec(selected, tmp_path / "spec"),
    ):
        with pytest.raises(TypeError, match=r"^harden\(\) first") as info:
            export()
        assert "ReLUSelector" in str(info.value)
    assert not (tmp_path / "selected").exists()
    assert not (tmp_path / "selected.onnx").exists()
    assert not (tmp_path / "spec").exists()
    search = keras.Sequential([keras.Input((4, 4, 2)), ka.SoftReLUMask(),
                               keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(TypeError, match=r"^harden\(\) first"):
        contract.exportable_model(search)
    directory = export_saved_model(ka.harden(selected), tmp_path, "selected")
    assert relu_elements(directory) == 0


class SpecActivation(keras.layers.Layer):
    """A non-linear site rebuilt in NumPy from a PI spec entry alone."""

    def __init__(self, site, **kwargs):
        super().__init__(**kwargs)
        self.site = site

    def call(self, inputs):
        x = keras.ops.convert_to_numpy(inputs).astype("float64")
        flat = x.reshape(len(x), -1)
        channels = self.site["shape"][-1]
        if self.site["coefficients"] is None:
            out = np.full_like(flat, np.nan)
        else:
            per_element = self.site["coefficients"][
                :, np.arange(flat.shape[1]) % channels
            ]
            out = sum(c * flat**power for power, c in enumerate(per_element))
        kept = self.site["kept_indices"]
        out[:, kept] = np.maximum(flat[:, kept], 0.0)
        assert not np.isnan(out).any()
        return out.reshape(x.shape).astype("float32")

    def compute_output_shape(self, input_shape):
        return input_shape


def rebuilt_from_spec(model, spec):
    """``model`` with each spec site's layer replaced by ``SpecActivation``."""
    sites = {site["layer"]: site for site in spec["sites"]}
    assert not any(site["fused"] for site in sites.values())

    def clone(layer):
        if layer.name in sites:
            return SpecActivation(sites.pop(layer.name))
        return layer

    rebuilt = keras.models.clone_model(model, clone_function=clone)
    assert not sites
    return rebuilt


@pytest.mark.parametrize("which", ["sequential", "residual"])
def test_pi_spec_alone_reproduces_outputs(which, tiny, exported, tmp_path):
    if which == "sequential":
        model, spec_path = tiny[1], exported / "pi_spec.json"
    else:
        model = hardened(residual_model(), keep=0.4, seed=6)
        spec_path = write_pi_spec(model, tmp_path, max_inline_indices=50)
        assert list(tmp_path.glob("pi_spec.*.kept.npy"))
    raw = json.loads(spec_path.read_text())
    assert raw["format_version"] == 6 and raw["input"]["shape"] == [8, 8, 3]
    count = ka.count_relus(model)
    assert raw["totals"]["relu_kept"] == count.kept
    assert raw["totals"] == {"relu_total": count.total,
                             "relu_kept": count.kept,
                             "polynomial": count.total - count.kept,
                             "max_comparisons": 0, "other_comparisons": 0,
                             "smooth_elements": 0,
                             "kept_by_activation": {"relu": count.kept}}
    assert {site["activation"] for site in raw["sites"]} == {"relu"}
    assert raw["traced"] == []
    assert all("counted" not in site for site in raw["sites"])
    assert [site["fused"] for site in raw["sites"]] == [
        row.fused for row in count.rows]
    spec = read_pi_spec(spec_path)
    kinds = {site["kind"] for site in spec["sites"]}
    assert "PartialReLU" in kinds
    if which == "residual":
        assert kinds == {"PartialReLU", "ReLU", "PolynomialActivation"}
    images = pixels(2, seed=7)
    rebuilt = rebuilt_from_spec(model, spec)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(rebuilt(images / 255.0)),
        keras_outputs(model, images)["logits"],
        atol=1e-4,
    )


def test_read_pi_spec_rejects_other_json(tmp_path):
    (tmp_path / "pi_spec.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="keras_autorep.pi_spec"):
        read_pi_spec(tmp_path)
    (tmp_path / "pi_spec.json").write_text(
        '{"format": "keras_autorep.pi_spec", "format_version": 1}')
    with pytest.raises(ValueError, match=r"version \(3, 4, 5, 6\)"):
        read_pi_spec(tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"no PI spec at {tmp_path / 'missing' / 'pi_spec.json'}")):
        read_pi_spec(tmp_path / "missing")


def test_contract_is_re_exported_by_the_package(tiny):
    for name in ("INPUT_NAME", "OUTPUT_NAMES", "SIGNATURE_KEY", "versions",
                 "write_version", "exportable_model", "ExportError"):
        assert getattr(export_package, name) is getattr(contract, name), name
    assert contract.INPUT_NAME == "image"
    assert contract.OUTPUT_NAMES == ("logits", "probabilities", "class_id")
    assert contract.SIGNATURE_KEY == "serving_default"
    assert contract.input_shape(tiny[1]) == (8, 8, 3)
    assert contract.exportable_model(tiny[1]) is tiny[1]
    assert export_package.relu_elements is relu_elements


def test_write_version_passes_staging_and_version_folders(tmp_path):
    calls = []

    def write(staging, version_dir):
        calls.append((staging, version_dir))
        assert staging.is_dir() and staging.parent == tmp_path / "m"
        assert staging.name.startswith(".") and not version_dir.exists()
        (staging / "file.txt").write_text("content")

    first = contract.write_version(tmp_path, "m", None, False, write)
    assert first == tmp_path / "m" / "1" and calls[0][1] == first
    assert (first / "file.txt").read_text() == "content"
    assert contract.versions(tmp_path / "m") == [1]
    assert contract.write_version(tmp_path, "m", 5, False, write).name == "5"
    assert contract.versions(tmp_path / "m") == [1, 5]
    with pytest.raises(ExportError, match="already exists"):
        contract.write_version(tmp_path, "m", 5, False, write)

    def failing(staging, version_dir):
        (staging / "partial").write_text("")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        contract.write_version(tmp_path, "m", None, False, failing)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        contract.LOCK_FILENAME, "1", "5"]


EXPORT_PROCESS = textwrap.dedent(
    """
    import os, sys, time
    from keras_autorep.export.contract import write_version

    def write(staging, version_dir):
        (staging / "saved_model.pb").write_text(sys.argv[2])
        if sys.argv[2] == "die":
            os._exit(9)  # dies like a killed process: nothing cleaned up
        print("writing", flush=True)
        time.sleep(3)

    print(write_version(sys.argv[1], "m", None, False, write).name)
    """
)


def export_process(base, how):
    return subprocess.Popen(
        [sys.executable, "-c", EXPORT_PROCESS, str(base), how],
        stdout=subprocess.PIPE, text=True, env=SUBPROCESS_ENV)


def write_marker(staging, version_dir):
    (staging / "saved_model.pb").write_text("this process")


def test_killed_export_leaves_what_the_next_export_removes(tmp_path):
    contract.write_version(tmp_path, "m", None, False, write_marker)
    killed = export_process(tmp_path, "die")
    assert killed.wait(timeout=120) == 9
    (leftover,) = (tmp_path / "m").glob(".2.staging-*")
    assert (leftover / "saved_model.pb").read_text() == "die"
    assert contract.write_version(
        tmp_path, "m", None, False, write_marker).name == "2"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        contract.LOCK_FILENAME, "1", "2"]


def test_concurrent_exports_of_one_name_take_turns(tmp_path):
    contract.write_version(tmp_path, "m", None, False, write_marker)
    other = export_process(tmp_path, "other")
    assert other.stdout.readline() == "writing\n"  # holds the lock now
    (staging,) = (tmp_path / "m").glob(".2.staging-*")
    mine = contract.write_version(tmp_path, "m", None, False, write_marker)
    assert other.wait(timeout=60) == 0
    assert other.stdout.read().split() == ["2"] and mine.name == "3"
    assert not staging.exists()  # moved into place by its owner, not removed
    assert (tmp_path / "m" / "2" / "saved_model.pb").read_text() == "other"
    assert (mine / "saved_model.pb").read_text() == "this process"


def test_export_all_extras_hook_writes_into_the_version(tiny, tmp_path):
    seen = []

    def extras(folder, version_dir):
        seen.append((folder, version_dir))
        assert (folder / "pi_spec.json").is_file()  # written before extras
        (folder / "notes.txt").write_text("extra")

    version = export_all(tiny[1], tmp_path, "extra", with_onnx=False,
                         extras=extras)
    ((folder, version_dir),) = seen
    assert version_dir == version and folder != version
    assert (version / "notes.txt").read_text() == "extra"
    assert not (version / "model.onnx").exists()
    assert not (version / "pi_cost.txt").exists()
