"""Calibrate the PI cost model: measure each op class in each runtime.

    python benchmarks/pi_calibrate.py [--runtimes crypten,spu-semi2k,...]
        [--images 2] [--out keras_autorep/costs/calibration.json]

Builds one small ONNX program per op class and size (ReLU; product of two
secret tensors; product with a per-element and with a per-channel model
constant; convolution; dense layer; global average), runs each in every
runtime's real two-party setting (``make pi-env``), reads the op classes of
each program with the same ``onnx_workload`` that prices exported models,
and fits per runtime, by non-negative least squares, the bytes, rounds and
seconds per unit of each feature (``keras_autorep.costs.FEATURES``). The
one-time setup is the smallest extra of the runner's warm-up run over the
programs: CHEETAH's base oblivious transfers; programs with larger tensors
grow their OT pools beyond it, so it is a lower bound. Prints the measurements next
to the fitted values and writes the coefficients with their provenance
(command, date, machine, runtime versions, every program measured).
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from scipy.optimize import nnls

from keras_autorep.costs import (
    CALIBRATION_PATH,
    USED_FEATURES,
    features,
)
from keras_autorep.pi.measure import summarise
from keras_autorep.pi.runtimes import RUNTIMES, interpreter, run_runtime
from keras_autorep.pi.workload import onnx_workload

RNG = np.random.default_rng(0)


def program(name, shape, build):
    """An ONNX model ``image -> build(image)``; ``build(graph_nodes,
    initialisers)`` appends nodes and returns the output name."""
    nodes, initialisers = [], []

    def constant(values, label):
        tensor = numpy_helper.from_array(
            np.asarray(values, "float32"), f"{name}_{label}")
        initialisers.append(tensor)
        return tensor.name

    output = node(nodes, "Flatten", [build(nodes, constant)], "flat",
                  axis=1)  # a second module: CrypTen unwraps single nodes
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [1, None])],
        initialisers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return name, model


def node(nodes, op, inputs, output, **attributes):
    nodes.append(helper.make_node(op, inputs, [output], **attributes))
    return output


def programs():
    made = []
    for n in (2048, 8192):
        made.append(program(f"relu_{n}", [1, n], lambda g, c: node(
            g, "Relu", ["image"], "y")))
        made.append(program(f"square_{n}", [1, n], lambda g, c: node(
            g, "Mul", ["image", node(g, "Flatten", ["image"], "x", axis=1)],
            "y")))
        made.append(program(
            f"scale_{n}", [1, n], lambda g, c, n=n: node(
                g, "Mul", ["image", c(RNG.normal(size=n), "c")], "y")))
    for channels, side in ((8, 16), (32, 8)):
        shape = [1, channels, side, side]
        made.append(program(
            f"channel_scale_{channels}x{side}", shape,
            lambda g, c, k=channels: node(
                g, "Mul", ["image", c(RNG.normal(size=(1, k, 1, 1)), "c")],
                "y")))
        made.append(program(
            f"conv_{channels}x{side}", shape, lambda g, c, k=channels: node(
                g, "Conv",
                ["image", c(RNG.normal(size=(2 * k, k, 3, 3)) * 0.1, "w"),
                 c(RNG.normal(size=2 * k), "b")],
                "y", pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1])))
        made.append(program(
            f"mean_{channels}x{side}", shape, lambda g, c: node(
                g, "GlobalAveragePool", ["image"], "y")))
    for k, m in ((256, 64), (1024, 16)):
        made.append(program(f"dense_{k}x{m}", [1, k], lambda g, c, k=k, m=m: (
            node(g, "Gemm", ["image", c(RNG.normal(size=(k, m)) * 0.05, "w"),
                             c(RNG.normal(size=m), "b")], "y",
                 alpha=1.0, beta=1.0, transA=0, transB=0))))
    return made


def fit(rows, targets, used):
    """Non-negative least squares over the ``used`` features."""
    matrix = np.array([[row[name] for name in used] for row in rows], float)
    scale = np.maximum(matrix.max(axis=0), 1.0)
    solution, _ = nnls(matrix / scale, np.asarray(targets, float))
    return {name: float(v) for name, v in zip(used, solution / scale)}


def versions(runtime):
    python = interpreter(RUNTIMES[runtime])
    package = "crypten" if runtime == "crypten" else "spu"
    found = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        capture_output=True, text=True, check=True)
    wanted = {package, "torch", "jax", "numpy"}
    return {p["name"]: p["version"] for p in json.loads(found.stdout)
            if p["name"].lower() in wanted}


def calibrate(runtime, made, images_count, scratch):
    measured = []
    for name, model in made:
        path = Path(scratch) / f"{name}.onnx"
        onnx.save(model, str(path))
        shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        images = RNG.normal(size=[images_count] + shape[1:]).astype("float32")
        _, stats = run_runtime(runtime, path, images, Path(scratch) / "run")
        summary = summarise(stats)
        measured.append(dict(program=name, features=features(
            onnx_workload(path)), **summary))
    rows = [m["features"] for m in measured]
    used = USED_FEATURES[runtime]
    coefficients = {
        "bytes": fit(rows, [m["bytes"] for m in measured], used["bytes"]),
        "rounds": fit(rows, [m["rounds"] for m in measured], used["rounds"]),
        "seconds": fit(rows, [m["online_seconds"] for m in measured],
                       used["seconds"]),
        # The smallest one-time setup seen (CHEETAH's base oblivious
        # transfers); larger programs grow their OT pools beyond it.
        "setup_bytes": float(min(m["setup_bytes"] for m in measured)),
    }
    return coefficients, measured


def print_table(runtime, coefficients, measured):
    print(f"\n{runtime}: {json.dumps(coefficients)}")
    print(f"{'program':<22}{'bytes':>12}{'fitted':>12}{'rounds':>8}"
          f"{'fitted':>8}{'seconds':>9}")
    for m in measured:
        fitted = {key: sum(coefficients[key].get(name, 0.0) * value
                           for name, value in m["features"].items())
                  for key in ("bytes", "rounds")}
        print(f"{m['program']:<22}{m['bytes']:>12,}{fitted['bytes']:>12,.0f}"
              f"{m['rounds']:>8}{fitted['rounds']:>8.1f}"
              f"{m['online_seconds']:>9.4f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--out", default=str(CALIBRATION_PATH))
    args = parser.parse_args(argv)
    out = Path(args.out)
    calibration = json.loads(out.read_text()) if out.exists() else {}
    protocols = calibration.setdefault("protocols", {})
    made = programs()
    for runtime in args.runtimes.split(","):
        with tempfile.TemporaryDirectory() as scratch:
            coefficients, measured = calibrate(
                runtime, made, args.images, scratch)
        print_table(runtime, coefficients, measured)
        protocols[runtime] = dict(
            coefficients,
            provenance=dict(
                command="python benchmarks/pi_calibrate.py "
                        + " ".join(argv if argv is not None else sys.argv[1:]),
                date=datetime.date.today().isoformat(),
                machine=f"{platform.machine()}, {os.cpu_count()} CPUs, "
                        f"{platform.system()} {platform.release()}",
                runtime=RUNTIMES[runtime].description,
                versions=versions(runtime),
                images_per_program=args.images,
                programs=measured,
            ),
        )
    out.write_text(json.dumps(calibration, indent=1) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
