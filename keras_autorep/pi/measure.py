"""Measured private inference of an export: ``pi_measured.json``.

``measure(version_dir, runtime, images)`` runs every image through the
export's ``model.onnx`` in a real two-party runtime (``runtimes``), checks
the decrypted logits against the plaintext graph (onnxruntime) and writes
the figures beside the model, one entry per runtime::

    {"format": "keras_autorep.pi_measured", "runs": {"crypten": {...}}}

Each entry: ``bytes`` (communication of one inference, both directions:
CrypTen's per-party counter, which counts what a party sends and
receives; SPU's sent bytes of both parties added), ``bytes_per_party``
(each party's own counter), ``rounds`` (CrypTen's communication rounds, or
SPU's send actions of party 0), ``setup_bytes`` (one-off, before the first
image), ``online_seconds`` (forward pass over loopback); each a mean
over the images (a CHEETAH session's OT buffers are refilled on whichever
inference empties them: the mean amortises the refills),
``max_abs_error`` (secure vs plaintext logits), ``top1_agreement``,
``images``, ``setting`` (the runtime and who holds what) and, with a baseline, ``baseline``
(its figures) and ``ratio`` (baseline / this, per figure).

A graph with an op the runtime cannot run is refused before any run
(``export.pi_ops``); a run that fails leaves the runner's output in
``pi_measure.<runtime>.log`` beside the model, which the error names.
"""

import json
from pathlib import Path

import numpy as np
import onnx

from keras_autorep.export import ONNX_FILENAME
from keras_autorep.export.pi_ops import describe_unsupported, unsupported_ops
from keras_autorep.pi.runtimes import run_runtime, runtime
from keras_autorep.pi.scratch import scratch_folder

MEASURED_FILENAME = "pi_measured.json"
# Where a failed run leaves its runner's output, beside the export.
LOG_FILENAME = "pi_measure.{runtime}.log"
FORMAT = "keras_autorep.pi_measured"
RATIO_FIELDS = ("bytes", "rounds", "online_seconds")


def plaintext_logits(onnx_path, images):
    """Logits of the ONNX graph in onnxruntime, one image at a time."""
    import onnxruntime

    session = onnxruntime.InferenceSession(
        str(onnx_path), providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    return np.concatenate([
        session.run(None, {name: image[None].astype("float32")})[0]
        for image in images
    ])


def summarise(stats):
    """Communication, rounds and time of one inference from a runner's
    ``stats``: means over the images, which amortise what lands on one
    inference for many, such as CHEETAH's OT buffer refills."""
    parties = stats["parties"]
    spu = stats["runtime"].startswith("spu")

    def mean(rank, key):
        return float(np.mean([run[key] for run in parties[rank]["runs"]]))

    per_party = [int(mean(rank, "bytes")) for rank in (0, 1)]
    seconds = max(mean(rank, "seconds") for rank in (0, 1))
    if spu:
        rounds = int(mean(0, "send_actions"))
        setup = sum(
            parties[rank]["warmup"]["bytes"] - per_party[rank]
            for rank in (0, 1)
        )
        total = sum(per_party)
    else:
        rounds = int(mean(0, "rounds"))
        setup = parties[0]["setup_bytes"]
        total = per_party[0]
    return {
        "bytes": int(total),
        "bytes_per_party": per_party,
        "rounds": rounds,
        "setup_bytes": int(max(0, setup)),
        "online_seconds": seconds,
    }


def measure(version_dir, runtime_name, images, baseline_dir=None,
            work_dir=None, write=True, envs=None):
    """Measure ``version_dir``'s model in ``runtime_name`` on ``images``
    (raw pixels, ``(N, H, W, C)``); returns the entry written to
    ``pi_measured.json`` (with ``write``). ``envs``: the folder of the
    runtime virtualenvs (``envs.envs_folder``); ``work_dir``: where the
    scratch folder goes (``scratch.scratch_folder``; removed at the end,
    or by the next measurement when this one was killed)."""
    spec = runtime(runtime_name)
    version_dir = Path(version_dir)
    images = np.asarray(images, "float32")
    onnx_path = version_dir / ONNX_FILENAME
    missing = unsupported_ops(onnx.load(str(onnx_path))).get(spec.env)
    if missing:
        raise ValueError(
            f"{onnx_path}: "
            f"{describe_unsupported({runtime_name: missing})}")
    log_path = version_dir / LOG_FILENAME.format(runtime=runtime_name)
    with scratch_folder("measure", work_dir) as scratch:
        logits, stats = run_runtime(
            runtime_name, onnx_path, images, scratch / "run", envs=envs,
            log_path=log_path,
        )
    log_path.unlink(missing_ok=True)  # a failed run's log, now stale
    plain = plaintext_logits(onnx_path, images)
    entry = dict(
        summarise(stats),
        max_abs_error=float(np.abs(logits - plain).max()),
        top1_agreement=float(np.mean(logits.argmax(-1) == plain.argmax(-1))),
        images=len(images),
        setting=spec.description,
    )
    if baseline_dir is not None:
        base = measure(baseline_dir, runtime_name, images,
                       work_dir=work_dir, write=write, envs=envs)
        entry["baseline"] = {"dir": str(Path(baseline_dir).resolve()),
                             **{k: base[k] for k in RATIO_FIELDS}}
        entry["ratio"] = {
            key: (base[key] / entry[key] if entry[key] else None)
            for key in RATIO_FIELDS
        }
    if write:
        write_measured(version_dir, runtime_name, entry)
    return entry


def read_measured(version_dir):
    """The ``pi_measured.json`` runs of an export (``{}`` if none)."""
    path = Path(version_dir) / MEASURED_FILENAME
    if not path.exists():
        return {}
    return json.loads(path.read_text())["runs"]


def write_measured(version_dir, runtime_name, entry):
    runs = read_measured(version_dir)
    runs[runtime_name] = entry
    path = Path(version_dir) / MEASURED_FILENAME
    path.write_text(json.dumps({"format": FORMAT, "runs": runs}, indent=1)
                    + "\n")
    return path
