"""PI cost model: workloads of ONNX graphs, calibrated predictions, the
garbled-circuit family, the report and ``python -m keras_autorep.pi cost``
(no runtime needed; the real two-party runs are in test_runtimes.py)."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import keras_autorep as ka
from keras_autorep import pi
from keras_autorep.export import export_all, read_pi_spec, write_pi_spec
from keras_autorep.pi import (
    Network,
    cost_report,
    estimate_cost,
    onnx_workload,
    predict,
)
from keras_autorep.pi.__main__ import main
from keras_autorep.costs import CalibrationError, calibration, features
from keras_autorep.costs import model as cost
from keras_autorep.costs.sites import all_relu_workload
from keras_autorep.pi.exported import find_spec, write_cost_file
from pi_models import harden_sites, teacher

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="pricing an export reads its ONNX graph (TensorFlow backend)",
)
PROTOCOLS = ("crypten", "spu-semi2k", "spu-cheetah")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """The hardened model's export and its teacher's."""
    base = tmp_path_factory.mktemp("exports")
    plain = teacher()
    hardened = harden_sites(plain)
    return (export_all(hardened, base, "hardened"),
            export_all(plain, base, "teacher"), hardened)


def test_garbled_circuit_constants_are_the_cited_figures():
    assert pi.GC_SERVER_GARBLE_MS_PER_RELU == 0.102
    assert pi.GC_SERVER_EVAL_MS_PER_RELU == 0.052
    assert pi.GC_CLIENT_EVAL_MS_PER_RELU == (0.28, 0.35)
    assert pi.GC_CLIENT_STORAGE_BYTES_PER_RELU == 18_248
    assert pi.POLYNOMIAL_TO_RELU_RATIO == pytest.approx(0.03 / 13.6)
    sources = " ".join(pi.SOURCES)
    assert "Garimella" in sources and "ASPLOS 2023" in sources
    assert "PASNet" in sources and "units undocumented" in sources
    cost = estimate_cost(1000, 2000)
    ratio = 0.03 / 13.6
    assert cost.online_ms == pytest.approx((1000 + 2000 * ratio) * 0.052)
    assert cost.client_storage_bytes == 1000 * 18_248
    with pytest.raises(ValueError, match=">= 0"):
        estimate_cost(-1)


def hand_built_graph(max_pool=True):
    """image (1, 4, 6, 6) -> Relu, x*x, x*initialiser, x*Constant 0
    (free), Clip, Conv 3x3 -> 5 channels, MaxPool 2x2 (with ``max_pool``),
    GlobalAveragePool, Sigmoid, Gemm 5 -> 3."""
    init = [
        numpy_helper.from_array(np.ones((1, 4, 1, 1), "float32"), "scale"),
        numpy_helper.from_array(np.ones((5, 4, 3, 3), "float32"), "w"),
        numpy_helper.from_array(np.ones((5, 3), "float32"), "dense"),
        numpy_helper.from_array(np.ones(3, "float32"), "bias"),
    ]
    nodes = [
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(
            np.zeros((), "float32"), "zero")),
        helper.make_node("Relu", ["image"], ["r"]),
        helper.make_node("Mul", ["r", "image"], ["sq"]),
        helper.make_node("Mul", ["sq", "scale"], ["scaled"]),
        helper.make_node("Mul", ["image", "zero"], ["nothing"]),
        helper.make_node("Add", ["scaled", "nothing"], ["sum"]),
        helper.make_node("Constant", [], ["six"], value=numpy_helper.from_array(
            np.full((), 6.0, "float32"), "six")),
        helper.make_node("Clip", ["sum", "zero", "six"], ["clipped"]),
        helper.make_node("Conv", ["clipped", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Sigmoid", ["g"], ["s"]),
        helper.make_node("Flatten", ["s"], ["f"]),
        helper.make_node("Gemm", ["f", "dense", "bias"], ["logits"]),
    ]
    if not max_pool:
        at = [node.op_type for node in nodes].index("MaxPool")
        del nodes[at]
        nodes[at].input[0] = "c"
    graph = helper.make_graph(
        nodes, "hand",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                       [1, 4, 6, 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])],
        init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_workload_of_a_hand_built_graph():
    w = onnx_workload(hand_built_graph())
    assert (w.comparisons, w.comparison_nodes, w.comparison_chunks) == (
        144, 1, 1)
    assert (w.clips, w.clip_nodes) == (144, 1)
    # 45 windows of 4: a tree of 2 comparisons (90 elements), then 1 (45).
    assert (w.max_windows, w.max_comparisons, w.max_nodes, w.max_levels,
            w.max_chunks) == (45, 45 * 3, 1, 2, 2)
    assert (w.sigmoids, w.sigmoid_nodes, w.sigmoid_blocks) == (5, 1, 1)
    assert (w.secret_products_out, w.secret_products_in) == (144, 288)
    assert (w.secret_products_small, w.secret_product_blocks) == (144, 0)
    assert (w.constant_products_out, w.constant_products_in) == (144, 148)
    assert w.constant_product_nodes == 1  # the product with zeros: free
    assert w.truncation_chunks == 5
    assert w.linear_out == 180 + 3 and w.linear_nodes == 2
    assert w.linear_in == (144 + 180) + (5 + 15)
    assert w.linear_macs == 180 * 36 + 3 * 5
    assert (w.means_out, w.mean_nodes) == (5, 1)
    f = features(w)
    assert f["opened"] == 288 + 148 + 344
    assert f["truncations"] == 183 + 144 + 144 + 5


def test_all_relu_version_is_the_teachers_graph(exports):
    hardened_dir, teacher_dir, _ = exports
    spec = read_pi_spec(hardened_dir)
    kinds = [(s["kept"] == 0, s["kept"] == s["total"]) for s in spec["sites"]]
    assert (True, False) in kinds and (False, True) in kinds
    hardened = onnx_workload(hardened_dir / "model.onnx")
    original = onnx_workload(teacher_dir / "model.onnx")
    assert hardened.comparisons == spec["totals"]["relu_kept"]
    assert hardened.secret_products_out == spec["totals"]["polynomial"]
    assert all_relu_workload(hardened, spec) == original


def test_calibration_has_every_protocol_with_provenance():
    table = calibration()["protocols"]
    assert set(PROTOCOLS) <= set(table)
    for name in PROTOCOLS:
        source = table[name]["provenance"]
        assert source["command"].startswith("python benchmarks/pi_calibrate")
        assert source["programs"] and source["versions"]
        assert table[name]["bytes"]["comparisons"] > 0
    assert table["crypten"]["bytes"]["comparisons"] == pytest.approx(464)
    assert table["crypten"]["bytes"]["opened"] == pytest.approx(16)


def broken_calibration(tmp_path, how):
    """A calibration file that is missing, not JSON or lacks the crypten
    bytes coefficients."""
    path = tmp_path / f"{how}.json"
    if how == "invalid":
        path.write_text('{"protocols": {')
    elif how == "incomplete":
        table = calibration()
        del table["protocols"]["crypten"]["bytes"]
        path.write_text(json.dumps(table))
    return path


@pytest.mark.parametrize("how, message", [
    ("missing", "cannot read the PI calibration"),
    ("invalid", "is not valid JSON"),
    ("incomplete", "lacks bytes of protocol 'crypten'"),
])
def test_broken_calibration_is_a_one_line_error(
        how, message, exports, tmp_path, monkeypatch, capsys):
    path = broken_calibration(tmp_path, how)
    monkeypatch.setattr(cost, "CALIBRATION_PATH", path)
    with pytest.raises(CalibrationError, match=message):
        calibration()
    with pytest.raises(CalibrationError, match=message):
        cost_report(exports[0])
    assert main(["cost", str(exports[0])]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ")
    assert message in captured.err and str(path) in captured.err
    assert captured.err.count("\n") == 1


def test_report_names_the_calibration_file_it_read(
        exports, tmp_path, monkeypatch):
    path = tmp_path / "elsewhere.json"
    path.write_text(json.dumps(calibration()))
    monkeypatch.setattr(cost, "CALIBRATION_PATH", path)
    text = cost_report(exports[0]).text()
    assert f"calibration ({path}):\n  crypten: CrypTen 0.4.1" in text


def measured_program(protocol, name):
    """What the calibration measured of one micro-program."""
    programs = calibration()["protocols"][protocol]["provenance"]["programs"]
    (program,) = [p for p in programs if p["program"] == name]
    return program


# Per element and per node, as the calibration's micro-programs measured
# them on 2,048 elements (deterministic counters: exact).
# CrypTen: relu 950,272 B in 9 rounds: 464 B a comparison; clip twice
# that in 9 rounds; sigmoid 752 B an element in 23 rounds; a chain of 4
# squares and scale open 2 x 2,048 values a node for 65,536 B: 16 B a
# value, 1 round a product node. SEMI2K: relu 294,912 B in 8 rounds: 144 B
# a comparison; clip twice that in 16 rounds; sigmoid 1,210 B an element in
# 53 rounds; scale truncates 2,048 values for 16,384 B: 8 B a truncation,
# 1 round a node; a square (a product and its truncation) 81,920 B in 2
# rounds: 32 B and 1 round for the product.
UNIT_COSTS = {
    "crypten": {"relu_2048": (464 * 2048, 9), "clip_2048": (928 * 2048, 9),
                "sigmoid_2048": (752 * 2048, 23),
                "square_2048x4": (4 * 16 * 4096, 4),
                "scale_2048": (16 * 4096, 1)},
    "spu-semi2k": {"relu_2048": (144 * 2048, 8),
                   "clip_2048": (288 * 2048, 16),
                   "sigmoid_2048": (1210 * 2048, 53),
                   "square_2048x4": (4 * (32 + 8) * 2048, 4 * 2),
                   "scale_2048": (8 * 2048, 1)},
}
# The hand-built graph without max-pooling, priced by hand: 144
# comparisons and 144 clips (1 node each), 5 sigmoids (1 node); CrypTen
# opens 780 values (test above) in 4 product nodes (x*x, x*scale, Conv,
# Gemm); SEMI2K: 144 secret products (1 node) and 476 truncations (x*x,
# x*scale, Conv, Gemm, the mean: 5 nodes).
HAND_PRICED = {
    "crypten": (144 * 464 + 144 * 928 + 5 * 752 + 780 * 16,
                9 + 9 + 23 + 4 * 1),
    "spu-semi2k": (144 * 144 + 144 * 288 + 5 * 1210 + 144 * 32 + 476 * 8,
                   8 + 16 + 53 + 1 + 5 * 1),
}


@pytest.mark.parametrize("protocol", sorted(HAND_PRICED))
def test_exact_protocols_price_a_graph_as_derived_by_hand(protocol):
    for name, (size, rounds) in UNIT_COSTS[protocol].items():
        program = measured_program(protocol, name)
        assert (program["bytes"], program["rounds"]) == (size, rounds), name
    prediction = predict(onnx_workload(hand_built_graph(max_pool=False)),
                         protocol)
    size, rounds = HAND_PRICED[protocol]
    assert prediction.bytes == pytest.approx(size, rel=1e-9)
    assert prediction.rounds == pytest.approx(rounds, rel=1e-9)
    assert prediction.setup_bytes == 0
    # On the WAN (50 ms, 100 Mbit/s) every round waits 50 ms and every
    # byte takes 80 ns, on top of the predicted compute.
    wan = Network(rtt_ms=50, bandwidth_mbps=100)
    assert prediction.latency_ms(wan) - 1e3 * prediction.seconds == \
        pytest.approx(rounds * 50 + size * 8e-5)
    with pytest.raises(ValueError, match="no calibration for protocol "
                       "'aby3'"):
        predict(onnx_workload(hand_built_graph()), "aby3")


def test_report_prices_every_protocol_against_all_relu(exports):
    hardened_dir, teacher_dir, model = exports
    report = cost_report(hardened_dir)
    assert set(report.predictions) == set(PROTOCOLS)
    explicit = cost_report(hardened_dir, teacher_dir)
    for name in PROTOCOLS:
        assert report.predictions[name][1] == explicit.predictions[name][1]
    count = ka.count_relus(model)
    assert report.counts["relus"] == count.kept
    assert report.original_counts["relus"] == count.total
    text = report.text()
    assert "crypten (calibrated prediction)" in text
    assert "garbled circuits (published figures" in text
    assert "RTT 1 ms, 1,000 Mbit/s" in text and "Garimella" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["protocols"]["crypten"]["communication_ratio"] > 1
    assert data["protocols"]["spu-cheetah"]["provenance"].startswith(
        "spu-cheetah: SPU 0.9.5 CHEETAH")
    from_model = cost_report(model)
    assert from_model.predictions == report.predictions


def test_pricing_the_written_export_converts_the_model_once(
        relu_counts, monkeypatch, tmp_path):
    """``export_all`` counts the model once and runs tf2onnx once; its
    ``extras`` hook prices the written folder without another conversion,
    with the figures of pricing the model itself."""
    import tf2onnx

    conversions = []
    convert = tf2onnx.convert.from_graph_def

    def counted(*args, **kwargs):
        conversions.append(kwargs["name"])
        return convert(*args, **kwargs)

    monkeypatch.setattr(tf2onnx.convert, "from_graph_def", counted)
    model = harden_sites(teacher(), seed=3)
    relu_counts.clear()
    reports = []
    export_all(model, tmp_path, "m", extras=lambda folder, _: reports.append(
        cost_report(folder, names=["crypten"])))
    assert len(conversions) == 1 and relu_counts == [model]
    count = ka.count_relus(model)
    relu_counts.clear()
    write_pi_spec(model, tmp_path / "spec", count=count)
    assert relu_counts == []
    again = cost_report(model, names=["crypten"], count=count)
    assert len(conversions) == 2 and relu_counts == []
    assert reports[0].to_dict() == again.to_dict()
    with pytest.raises(ValueError, match="count"):
        cost_report(tmp_path / "m" / "1", count=count)


def test_max_pool_and_other_comparisons_count_as_comparisons(exports):
    spec = read_pi_spec(exports[0])
    spec["totals"].update(max_comparisons=100, other_comparisons=20)
    counts = pi.report.spec_counts(spec)
    assert counts["comparisons"] == spec["totals"]["relu_kept"] + 120
    assert pi.report.all_relu_counts(spec)["comparisons"] == (
        spec["totals"]["relu_total"] + 120)


def test_cost_command(exports, tmp_path, capsys):
    hardened_dir = exports[0]
    assert main(["cost", str(hardened_dir)]) == 0
    text = capsys.readouterr().out
    assert ka.count_relus(exports[2]).table() in text
    assert "spu-cheetah (calibrated prediction)" in text
    assert main(["cost", str(hardened_dir), "--protocol", "spu-semi2k",
                 "--rtt-ms", "40", "--bandwidth-mbps", "100", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data["protocols"]) == ["spu-semi2k"]
    assert data["network"] == {"rtt_ms": 40.0, "bandwidth_mbps": 100.0}
    assert main(["cost", str(tmp_path / "missing")]) == 1
    assert "no pi_spec.json" in capsys.readouterr().err
    assert not (hardened_dir / "pi_cost.txt").exists()  # only with --write
    assert find_spec(hardened_dir.parent) == hardened_dir / "pi_spec.json"
    copy = tmp_path / "copy"
    shutil.copytree(hardened_dir, copy)
    assert main(["cost", str(copy), "--write"]) == 0
    written = (copy / "pi_cost.txt").read_text()
    assert written.strip() in capsys.readouterr().out
    assert write_cost_file(copy).read_text() == written


def test_cost_command_needs_a_subcommand(usage_error):
    usage_error(lambda: main([]),
                "the following arguments are required: command")
    usage_error(lambda: main(["report", "somewhere"]),
                "argument command: invalid choice: 'report'")


def test_cost_runs_as_module(exports):
    result = subprocess.run(
        [sys.executable, "-m", "keras_autorep.pi", "cost", str(exports[0])],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "PI cost per inference" in result.stdout


def test_spec_alone_prices_garbled_circuits_only(exports, tmp_path):
    folder = tmp_path / "spec_only"
    folder.mkdir()
    for path in exports[0].glob("pi_spec*"):
        (folder / path.name).write_bytes(path.read_bytes())
    report = cost_report(folder)
    assert report.predictions == {}
    assert "garbled circuits" in report.text()
    assert "calibrated protocols: not priced (no ONNX graph)" in report.text()



def fake_runtime(folder, script):
    """A ``.venv-crypten`` whose python runs ``script`` (bash) instead."""
    python = folder / ".venv-crypten" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/bash\n{script}\n")
    python.chmod(0o755)
    return folder


def test_a_failed_run_keeps_its_log_where_the_message_says(
        exports, tmp_path, capsys, cifar10_archive):
    envs = fake_runtime(tmp_path, "echo 'File x, line 1' >&2; "
                        "echo \"KeyError: 'mode'\" >&2; "
                        "echo 'error: a CrypTen party exited with [1, 1]' "
                        ">&2; exit 1")
    assert main(["measure", str(exports[0]), "--images", "1",
                 "--data-dir", str(cifar10_archive),
                 "--envs", str(envs)]) == 1
    error = capsys.readouterr().err
    log = exports[0] / "pi_measure.crypten.log"
    assert error.count("\n") == 1
    assert "crypten runner failed (exit 1): KeyError: 'mode'" in error
    assert error.strip().endswith(f"log in {log}")
    assert "a CrypTen party exited" in log.read_text()
    log.unlink()


def test_an_op_a_runtime_lacks_is_named_at_export_and_measure(
        tmp_path, capsys):
    model = keras.Sequential([
        keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
        keras.layers.LeakyReLU(0.2), keras.layers.Flatten(),
        keras.layers.Dense(3)])
    with pytest.warns(UserWarning, match=r"crypten cannot run it: LeakyRelu "
                      r"\(node .*CrypTen 0.4.1's ONNX importer has no "
                      r"LeakyRelu"):
        version = export_all(model, tmp_path, "leaky")
    envs = fake_runtime(tmp_path / "envs", "exit 3")
    images = np.zeros((1, 8, 8, 3), "float32")
    with pytest.raises(ValueError, match="crypten cannot run it: LeakyRelu"):
        pi.measure(version, "crypten", images, envs=envs)
    assert not (version / "pi_measure.crypten.log").exists()


def test_the_spu_ops_the_export_checks_are_the_translated_ones():
    from keras_autorep.export.pi_ops import SPU_OPS
    from keras_autorep.pi.stablehlo import translated_ops

    assert translated_ops() == SPU_OPS
