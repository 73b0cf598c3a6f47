"""SPU CHEETAH's oblivious-transfer refills, per element of each op class.

    python benchmarks/cheetah_refills.py [--images 24]
        [--programs Relu:2048:16 Sigmoid:2048:4 ...] [--write]

CHEETAH draws its oblivious transfers from a Ferret OT buffer per OT
instance, kept for the whole session; an instance whose buffer runs out
bootstraps it again, which sends ``REFILL_ACTIONS`` messages (yacl's LPN
parameters: t = 1,280 noise positions, one single-point OT each, and one
more) and about 265 KB. Which inference pays a refill depends on what the
inferences before it consumed, so the fair per-inference figure is the
amortised one.

Each program is a chain of one op, ``OP:N:K``: K nodes on N elements
(``Relu`` and ``Clip`` nodes each followed by a constant shift, so that
the chain does not fold into one node; ``Mul`` squares). It runs a warm-up and
``--images`` inferences in one CHEETAH session (``make pi-env``); the
refills are the send actions above the fewest of any inference, in units
of ``REFILL_ACTIONS`` (so a program must leave at least one inference
without a refill: shorten a chain whose every inference refills). Prints
one JSON line per program: the send actions
of the warm-up and of an inference without a refill, the extra actions of
each inference, the bytes of a refill (both parties) and refills per
inference and per element.

``--write`` stores refills per element of each op class's feature
(``keras_autorep.costs.FEATURES``: ReLU -> ``comparisons``, ``Clip`` ->
``clips``, ``Sigmoid`` -> ``sigmoids``, ``Mul`` -> ``secret_products``;
max-pooling's ``max_comparisons`` take the comparisons' rate, their
bytes per element being the same), the actions and bytes of a refill, and
the provenance in ``calibration.json``'s ``spu-cheetah`` entry
(``refills``): the cost model then adds the amortised refills to every
CHEETAH prediction.
"""

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

from keras_autorep.costs.model import CALIBRATION_PATH
from keras_autorep.pi.runtimes import RUNTIMES, run_runtime
from pi_calibrate import node, program, versions

REFILL_ACTIONS = 1281
DEFAULT_PROGRAMS = ("Relu:2048:16", "Relu:16384:4", "Sigmoid:2048:4",
                    "Sigmoid:8192:1", "Clip:2048:8", "Mul:2048:16")
FEATURE_OF = {"Relu": "comparisons", "Clip": "clips",
              "Sigmoid": "sigmoids", "Mul": "secret_products"}
OPS = tuple(FEATURE_OF)


def chain(op, size, length):
    """``(name, onnx.ModelProto)``: ``length`` ``op`` nodes on ``size``
    elements."""
    def build(nodes, constant):
        y = "image"
        for i in range(length):
            inputs = {"Mul": [y, y], "Clip": [
                y, constant(np.float32(-0.5), f"low{i}"),
                constant(np.float32(0.5), f"high{i}")]}.get(op, [y])
            y = node(nodes, op, inputs, f"y{i}")
            if op in ("Relu", "Clip"):
                y = node(nodes, "Add", [y, constant(
                    np.full([1, size], -0.01), f"shift{i}")], f"z{i}")
        return y

    return program(f"{op}_{size}x{length}", [1, size], build)


def parse_program(text):
    """``OP:N:K`` -> ``(op, n, k)``."""
    try:
        op, size, length = text.split(":")
        size, length = int(size), int(length)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected OP:N:K, e.g. Relu:2048:16") from None
    if op not in OPS or size < 1 or length < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: OP one of {OPS}, N and K positive")
    return op, size, length


def refills(op, size, length, images, work_dir):
    """The figures of one program (see the module doc)."""
    name, model = chain(op, size, length)
    path = Path(work_dir) / f"{name}.onnx"
    onnx.save(model, str(path))
    x = np.random.default_rng(0).normal(size=[images, size]) * 0.1
    _, stats = run_runtime("spu-cheetah", path, x.astype("float32"),
                           Path(work_dir) / name)
    parties = stats["parties"]
    actions = [run["send_actions"] for run in parties[0]["runs"]]
    sent = [sum(party["runs"][i]["bytes"] for party in parties)
            for i in range(len(actions))]
    base = int(np.argmin(actions))
    extra = [count - actions[base] for count in actions]
    count = sum(extra) / REFILL_ACTIONS
    return {
        "program": name, "op": op, "elements": size * length,
        "warmup_actions": parties[0]["warmup"]["send_actions"],
        "base_actions": actions[base], "extra_actions": extra,
        "whole_refills": all(e % REFILL_ACTIONS == 0 for e in extra),
        "refill_bytes": (sum(sent) - len(sent) * sent[base]) / count
        if count else None,
        "refills_per_inference": count / images,
        "refills_per_element": count / (images * size * length),
    }


def rates(rows):
    """``refills`` of ``calibration.json`` from the programs' rows."""
    per_element = {}
    for op, feature in FEATURE_OF.items():
        measured = [row for row in rows if row["op"] == op]
        if measured:
            per_element[feature] = (
                sum(r["refills_per_element"] * r["elements"]
                    for r in measured)
                / sum(r["elements"] for r in measured))
    if "comparisons" in per_element:
        per_element["max_comparisons"] = per_element["comparisons"]
    # The median: one program's byte counters can miss its refills.
    refill_bytes = [r["refill_bytes"] for r in rows if r["refill_bytes"]]
    return {"actions": REFILL_ACTIONS,
            "bytes": float(np.median(refill_bytes)) if refill_bytes else 0.0,
            "per_element": per_element}


def write(rows, images, command, path=CALIBRATION_PATH):
    """Store ``rates(rows)`` with its provenance as ``spu-cheetah``'s
    ``refills`` in the calibration file at ``path``."""
    table = json.loads(Path(path).read_text())
    entry = table["protocols"]["spu-cheetah"]
    entry["refills"] = dict(rates(rows), provenance=dict(
        command=command, date=datetime.date.today().isoformat(),
        runtime=RUNTIMES["spu-cheetah"].description,
        versions=versions("spu-cheetah"), images_per_program=images,
        programs=rows))
    Path(path).write_text(json.dumps(table, indent=1) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="benchmarks/cheetah_refills.py",
        description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24,
                        help="inferences after the warm-up (default 24)")
    parser.add_argument("--programs", nargs="+", type=parse_program,
                        default=[parse_program(p) for p in DEFAULT_PROGRAMS],
                        help="OP:N:K chains (default: "
                             + " ".join(DEFAULT_PROGRAMS) + ")")
    parser.add_argument("--write", action="store_true",
                        help="store the rates in calibration.json")
    args = parser.parse_args(argv)
    if args.images < 2:
        parser.error("--images must be at least 2")
    rows = []
    with tempfile.TemporaryDirectory() as work_dir:
        for op, size, length in args.programs:
            rows.append(refills(op, size, length, args.images, work_dir))
            print(json.dumps(rows[-1]), flush=True)
    if args.write:
        command = "python benchmarks/cheetah_refills.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
        write(rows, args.images, command.strip())
        print(f"wrote {CALIBRATION_PATH}: {json.dumps(rates(rows))}")


if __name__ == "__main__":
    sys.exit(main())
