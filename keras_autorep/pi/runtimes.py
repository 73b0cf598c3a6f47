"""The two-party runtimes, each in its own virtualenv, driven through files.

``python -m keras_autorep.pi setup`` (``make pi-env`` in a checkout) builds
``.venv-crypten`` (CrypTen 0.4.1 on torch 2.13.0, CPU) and ``.venv-spu``
(SecretFlow SPU 0.9.5, jax 0.4.34, numpy < 2) in the folder ``envs``
resolves to; neither imports keras_autorep. ``run_runtime`` writes the
program (``model.onnx`` for CrypTen, its StableHLO text for SPU) and the
images into a work folder, runs the runner script shipped in ``runners/``
with that virtualenv's interpreter, and reads back the decrypted logits and
the communication counts.
"""

import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np

from keras_autorep.pi.envs import interpreter_path, runner_file
from keras_autorep.pi.stablehlo import STABLEHLO_FILENAME, onnx_stablehlo


@dataclasses.dataclass(frozen=True)
class Runtime:
    """A runtime: its environment (``envs.ENVIRONMENTS``), runner script
    and protocol."""

    name: str
    env: str
    runner: str
    protocol: str
    description: str


RUNTIMES = {
    "crypten": Runtime(
        "crypten", "crypten", "crypten_party.py", None,
        "CrypTen 0.4.1, 2 parties (gloo over loopback), model secret-shared "
        "by party 0, image by party 1, trusted-first-party Beaver triples",
    ),
    "spu-semi2k": Runtime(
        "spu-semi2k", "spu", "spu_party.py", "SEMI2K",
        "SPU 0.9.5 SEMI2K, 2 parties (brpc over loopback), FM64, image "
        "secret, model public, trusted-dealer correlations (online only)",
    ),
    "spu-cheetah": Runtime(
        "spu-cheetah", "spu", "spu_party.py", "CHEETAH",
        "SPU 0.9.5 CHEETAH, 2 parties (brpc over loopback), FM64, image "
        "secret, model public, OT and HE based (no dealer)",
    ),
}


def runtime(name):
    """The ``Runtime`` called ``name`` (``ValueError`` lists the names)."""
    if name not in RUNTIMES:
        raise ValueError(
            f"unknown runtime {name!r}; choose from {sorted(RUNTIMES)}"
        )
    return RUNTIMES[name]


def interpreter(spec, envs=None):
    """The Python of ``spec``'s virtualenv in ``envs_folder(envs)``
    (``FileNotFoundError`` says where it looked and how to build it)."""
    return interpreter_path(spec.env, envs)


def runner(spec):
    """The runner script of ``spec`` (shipped in ``runners/``)."""
    return runner_file(spec.runner)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def last_error(text):
    """The last Python exception of a runner's output (``KeyError:
    'mode'``; with the next line where it ends in a colon), else its last
    ``error: ...`` line, else its last line."""
    lines = [line.strip() for line in text.strip().splitlines()
             if line.strip()] or ["no output"]
    exceptions = [index for index, line in enumerate(lines)
                  if re.match(r"[\w.]*(Error|Exception)\b:?", line)]
    if exceptions:
        # SPU's exceptions end their first line with "what:" and give the
        # message on the next.
        last = exceptions[-1]
        return " ".join(lines[last:last + 2] if lines[last].endswith(":")
                        else lines[last:last + 1])
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines)[-1]


def run_runtime(name, onnx_path, images, work_dir, timeout=3600,
                envs=None, log_path=None):
    """Run ``images`` (raw pixels, NHWC, one forward pass each) through
    ``onnx_path`` in runtime ``name`` (its virtualenv in
    ``envs_folder(envs)``); returns ``(logits, stats)``. When the runner
    fails, its output is written to ``log_path`` (default
    ``work_dir/runner.log``) and the ``RuntimeError`` names that file.

    ``stats`` is the runner's ``stats.json``: per party, per image
    ``bytes`` (CrypTen: sent + received; SPU: sent) and ``rounds`` (CrypTen)
    or ``send_actions`` (SPU), ``seconds``; SPU adds the warm-up run.
    """
    spec = runtime(name)
    python = interpreter(spec, envs)
    work_dir = Path(work_dir)
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    np.save(work_dir / "images.npy", np.asarray(images, "float32"))
    if spec.protocol is None:
        program = onnx_path
        options = []
    else:
        program = work_dir / STABLEHLO_FILENAME
        program.write_text(onnx_stablehlo(onnx_path))
        options = ["--protocol", spec.protocol]
    command = [
        str(python), str(runner(spec)), str(program),
        str(work_dir / "images.npy"), str(work_dir / "out"),
        "--port", str(free_port()), *options,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, PYTHONPATH=""),
    )
    stats_path = work_dir / "out" / "stats.json"
    if result.returncode != 0 or not stats_path.exists():
        log_path = Path(log_path or work_dir / "runner.log")
        log_path.write_text(result.stdout + result.stderr)
        raise RuntimeError(
            f"{name} runner failed (exit {result.returncode}): "
            f"{last_error(result.stderr)}; log in {log_path}"
        )
    logits = np.load(work_dir / "out" / "logits.npy")
    return logits, json.loads(stats_path.read_text())
