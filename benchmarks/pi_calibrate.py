"""Calibrate the PI cost model: measure each op class in each runtime.

    python benchmarks/pi_calibrate.py [--runtimes crypten,spu-semi2k,...]
        [--images 2] [--out keras_autorep/costs/calibration.json]

Builds small ONNX programs, each op class at two or more sizes (ReLU;
ReLU6's clip; sigmoid; products of two secrets in chains, below and
above CHEETAH's direct-product size; products with per-element and
per-channel constants; convolution and depthwise convolution; 2x2 and 3x3
max-pooling; average pooling and global means; a squeeze-excitation gate;
dense layers), runs each in every runtime's real two-party setting (``make
pi-env``), reads the op classes of each program with the same
``onnx_workload`` that prices exported models, and fits per runtime, by
non-negative least squares on relative errors, the bytes, rounds and
seconds per unit of each feature (``keras_autorep.costs.FEATURES``,
``USED_FEATURES``). Each program's figures are means over its images (a
cache filled by whole batches, such as CHEETAH's Beaver triples, is
amortised as in a model), except CHEETAH's OT buffer refills: they are
taken out (``without_refills``; their rates come first, from
``benchmarks/cheetah_refills.py --write``) and the cost model adds them
amortised. The one-time setup is the smallest extra of the
runner's warm-up run over the programs: CHEETAH's base oblivious
transfers; programs with larger tensors grow their OT pools beyond it, so
it is a lower bound. Prints the measurements next to the fitted values and
writes the coefficients with their provenance (command, date, machine,
runtime versions, every program measured) after each runtime. About an
hour on 2 cores. ``--refit`` fits the programs already measured in
``--out`` again (features recomputed from their graphs), running nothing.
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

from keras_autorep.costs.model import CALIBRATION_PATH
from keras_autorep.costs.workload import USED_FEATURES, features
from keras_autorep.pi.measure import summarise
from keras_autorep.pi.runtimes import RUNTIMES, interpreter, run_runtime
from keras_autorep.pi.workload import onnx_workload

RNG = np.random.default_rng(0)


def program(name, shape, build):
    """An ONNX model ``image -> build(image)``; ``build(nodes, constant)``
    appends nodes (``constant(values, label)``: a model initialiser, secret
    in CrypTen) and returns the output name."""
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


def public(nodes, values, label):
    """A ``Constant`` node (public in every runtime)."""
    nodes.append(helper.make_node("Constant", [], [label], value=(
        numpy_helper.from_array(np.asarray(values, "float32"), label))))
    return label


def copy(g, tensor):
    """``tensor`` under another name (no node reads a tensor twice)."""
    return node(g, "Flatten", [tensor], f"{tensor}_copy", axis=1)


def chain(g, length):
    """``length`` secret products in a row, each of the image and the
    previous one (the Beaver path's leftovers carry over, as in models)."""
    y = "image"
    for i in range(length):
        y = node(g, "Mul", [y, copy(g, "image") if i == 0 else "image"],
                 f"y{i}")
    return y


def elementwise_programs():
    """Programs on a flat ``[1, n]`` image."""
    made = []
    for n in (2048, 8192):
        made += [
            program(f"relu_{n}", [1, n], lambda g, c: node(
                g, "Relu", ["image"], "y")),
            program(f"clip_{n}", [1, n], lambda g, c: node(
                g, "Clip", ["image", public(g, 0.0, "low"),
                            public(g, 6.0, "high")], "y")),
            program(f"scale_{n}", [1, n], lambda g, c, n=n: node(
                g, "Mul", ["image", c(RNG.normal(size=n), "c")], "y")),
        ]
    for n in (256, 2048, 8192, 20000):
        made.append(program(f"sigmoid_{n}", [1, n], lambda g, c: node(
            g, "Sigmoid", ["image"], "y")))
    # Secret products below 16,384 elements (Beaver path under CHEETAH)
    # in chains, and above it (direct path), aligned to 16,384 or not.
    for n, length in ((2048, 4), (3000, 8), (8192, 4), (16384, 1),
                      (24576, 1), (40000, 1)):
        made.append(program(f"square_{n}x{length}", [1, n],
                            lambda g, c, k=length: chain(g, k)))
    return made


def pooling(g, op, kernel, stride):
    return node(g, op, ["image"], "y", kernel_shape=[kernel] * 2,
                strides=[stride] * 2)


def map_programs():
    """Programs on an NCHW ``[1, C, S, S]`` image."""
    made = []
    for channels, side in ((8, 16), (32, 16)):
        shape = [1, channels, side, side]
        made += [
            program(f"conv_{channels}x{side}", shape,
                    lambda g, c, k=channels: node(
                        g, "Conv",
                        ["image", c(RNG.normal(size=(2 * k, k, 3, 3)) * 0.1,
                                    "w"), c(RNG.normal(size=2 * k), "b")],
                        "y", pads=[1, 1, 1, 1], strides=[1, 1],
                        dilations=[1, 1])),
            program(f"depthwise_{channels}x{side}", shape,
                    lambda g, c, k=channels: node(
                        g, "Conv",
                        ["image", c(RNG.normal(size=(k, 1, 3, 3)) * 0.3, "w"),
                         c(RNG.normal(size=k), "b")],
                        "y", pads=[1, 1, 1, 1], strides=[1, 1],
                        dilations=[1, 1], group=k)),
            program(f"channel_scale_{channels}x{side}", shape,
                    lambda g, c, k=channels: node(
                        g, "Mul", ["image",
                                   c(RNG.normal(size=(1, k, 1, 1)), "c")],
                        "y")),
            program(f"mean_{channels}x{side}", shape, lambda g, c: node(
                g, "GlobalAveragePool", ["image"], "y")),
            program(f"avgpool2_{channels}x{side}", shape, lambda g, c: (
                pooling(g, "AveragePool", 2, 2))),
            program(f"maxpool2_{channels}x{side}", shape, lambda g, c: (
                pooling(g, "MaxPool", 2, 2))),
            program(f"maxpool3_{channels}x{side + 1}",
                    [1, channels, side + 1, side + 1], lambda g, c: (
                        pooling(g, "MaxPool", 3, 2))),
            # A squeeze-excitation gate: the map times its channel means.
            program(f"gate_{channels}x{side}", shape, lambda g, c: node(
                g, "Mul", ["image", node(g, "ReduceMean", ["image"], "m",
                                         axes=[2, 3], keepdims=1)], "y")),
        ]
    return made


def programs():
    """Every micro-program, ``[(name, onnx.ModelProto)]``."""
    made = elementwise_programs() + map_programs()
    for k, m in ((256, 64), (1024, 16)):
        made.append(program(f"dense_{k}x{m}", [1, k], lambda g, c, k=k, m=m: (
            node(g, "Gemm", ["image", c(RNG.normal(size=(k, m)) * 0.05, "w"),
                             c(RNG.normal(size=m), "b")], "y",
                 alpha=1.0, beta=1.0, transA=0, transB=0))))
    return made


def fit(rows, targets, used):
    """Non-negative least squares over the ``used`` features, each
    program's error relative to its measurement."""
    targets = np.asarray(targets, float)
    weights = 1.0 / np.maximum(targets, 1.0)
    matrix = np.array([[row[name] for name in used] for row in rows], float)
    matrix = matrix * weights[:, None]
    scale = np.maximum(matrix.max(axis=0), 1e-12)
    solution, _ = nnls(matrix / scale, targets * weights)
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


def without_refills(name, stats, refill):
    """``summarise(stats)`` of a CHEETAH program, its OT buffer refills
    taken out (``refill``: calibration.json's ``refills``, actions and
    bytes of one): the cost model adds them amortised. Each inference's
    send actions are its own, fewer than one refill's by design of these
    programs, plus whole refills (``RuntimeError`` when the inferences'
    own actions differ by more than a tenth of a refill); the bytes are
    those of the inferences that paid the fewest, less that many refills'
    bytes. ``refills`` lists the refills each inference paid."""
    summary = summarise(stats)
    parties = stats["parties"]
    actions = [run["send_actions"] for run in parties[0]["runs"]]
    paid = [count // refill["actions"] for count in actions]
    own = [count % refill["actions"] for count in actions]
    if max(own) - min(own) > refill["actions"] / 10:
        raise RuntimeError(
            f"{name}: its inferences differ by other than whole refills "
            f"({sorted(actions)} send actions)")
    fewest = [i for i, count in enumerate(paid) if count == min(paid)]
    sent = np.mean([sum(party["runs"][i]["bytes"] for party in parties)
                    for i in fewest])
    return dict(summary, rounds=int(np.mean(own)), refills=paid,
                bytes=int(sent - min(paid) * refill["bytes"]))


def measure_programs(runtime, made, images_count, scratch, refill=None):
    """Each program measured in ``runtime`` (means over the images;
    ``without_refills`` where ``refill`` is given)."""
    measured = []
    for name, model in made:
        path = Path(scratch) / f"{name}.onnx"
        onnx.save(model, str(path))
        shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        images = RNG.normal(size=[images_count] + shape[1:]).astype("float32")
        _, stats = run_runtime(runtime, path, images, Path(scratch) / "run")
        summary = (without_refills(name, stats, refill) if refill
                   else summarise(stats))
        measured.append(dict(program=name, **summary))
        print(f"{runtime} {name}: {json.dumps(summary)}", flush=True)
    return measured


def coefficients_of(runtime, measured, made):
    """The fitted coefficients of ``runtime``; each measured program gets
    the features its graph has now (``features``)."""
    graphs = dict(made)
    for m in measured:
        m["features"] = features(onnx_workload(graphs[m["program"]]))
    rows = [m["features"] for m in measured]
    used = USED_FEATURES[runtime]
    return {
        "bytes": fit(rows, [m["bytes"] for m in measured], used["bytes"]),
        "rounds": fit(rows, [m["rounds"] for m in measured], used["rounds"]),
        "seconds": fit(rows, [m["online_seconds"] for m in measured],
                       used["seconds"]),
        # The smallest one-time setup seen (CHEETAH's base oblivious
        # transfers); larger programs grow their OT pools beyond it.
        "setup_bytes": float(min(m["setup_bytes"] for m in measured)),
    }


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
    parser.add_argument("--refit", action="store_true",
                        help="fit again the programs measured in --out "
                        "(after a change of the features), measuring none")
    args = parser.parse_args(argv)
    out = Path(args.out)
    calibration = json.loads(out.read_text()) if out.exists() else {}
    protocols = calibration.setdefault("protocols", {})
    made = programs()
    command = "python benchmarks/pi_calibrate.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    for runtime in args.runtimes.split(","):
        # benchmarks/cheetah_refills.py's rates stay.
        before = protocols.get(runtime, {})
        kept = {"refills": before["refills"]} if "refills" in before else {}
        if args.refit:
            provenance = protocols[runtime]["provenance"]
            provenance["fitted"] = command.strip()
        else:
            if runtime == "spu-cheetah" and not kept:
                parser.error("spu-cheetah needs its refills measured first: "
                             "python benchmarks/cheetah_refills.py --write")
            with tempfile.TemporaryDirectory() as scratch:
                measured = measure_programs(
                    runtime, made, args.images, scratch,
                    kept.get("refills"))
            provenance = dict(
                command=command, date=datetime.date.today().isoformat(),
                machine=f"{platform.machine()}, {os.cpu_count()} CPUs, "
                        f"{platform.system()} {platform.release()}",
                runtime=RUNTIMES[runtime].description,
                versions=versions(runtime), images_per_program=args.images,
                programs=measured)
        coefficients = coefficients_of(runtime, provenance["programs"], made)
        print_table(runtime, coefficients, provenance["programs"])
        protocols[runtime] = dict(coefficients, provenance=provenance, **kept)
        out.write_text(json.dumps(calibration, indent=1) + "\n")
        print(f"wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
