"""Data-parallel training (``keras_autorep.training.distribute``): two
simulated CPU devices train like one, on JAX and on TensorFlow.

Each backend runs in a fresh process (the simulated devices must be set up
before the backend starts, and must not leak into the rest of the suite).
"""

import functools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_autorep.recipes.cli import build_parser
from keras_autorep.recipes.settings import Settings, UsageError

from check_runs import check_env, run_check as run_script

HERE = Path(__file__).resolve().parent
# float32 reductions split across two devices add in another order
RTOL, ATOL = 1e-5, 1e-5


@functools.cache  # one process per backend for the whole module
def run_check(backend):
    return run_script("data_parallel_check.py", backend)


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_two_devices_train_like_one(backend):
    runs = run_check(backend)
    one, two = runs["1"], runs["2"]
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=RTOL)
    assert two["relu_counts"] == one["relu_counts"]  # counted once
    assert len(one["state"]) == len(two["state"]) == 2
    for a, b in zip(one["state"], two["state"]):
        assert (a["replicas"], b["replicas"]) == (1, 2)
        assert b["replicas_agree"]  # identical on every device
        assert b["mask"] == a["mask"]
        for key in ("mean", "std", "coefficients"):  # global-batch DaPa
            np.testing.assert_allclose(b[key], a[key], rtol=RTOL, atol=ATOL)
    # the masks moved: the comparison is not between two initial states
    assert one["relu_counts"][-1] < one["relu_counts"][0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_jax_processes_on_localhost_train_like_one_device():
    """keras.distribution.initialize: two processes of one CPU device each
    (coordinator 127.0.0.1) train as one two-device DataParallel job."""
    port = free_port()
    processes = [
        subprocess.Popen(
            [sys.executable, str(HERE / "data_parallel_check.py"),
             "multihost"],
            env=check_env("jax", KERAS_DISTRIBUTION_JOB_ADDRESSES=(
                f"127.0.0.1:{port}"), KERAS_DISTRIBUTION_NUM_PROCESSES="2",
                KERAS_DISTRIBUTION_PROCESS_ID=str(process)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for process in (0, 1)]
    runs = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=480)
            assert process.returncode == 0, err[-3000:]
            runs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    one = run_check("jax")["1"]  # one device, one process
    for run in runs:
        np.testing.assert_allclose(run["losses"], one["losses"], rtol=RTOL)
        assert run["relu_counts"] == one["relu_counts"]
        for a, b in zip(one["state"], run["state"]):
            assert b["mask"] == a["mask"]
            np.testing.assert_allclose(b["mean"], a["mean"], rtol=RTOL,
                                       atol=ATOL)


def test_devices_beyond_those_here_and_several_hosts_are_usage_errors():
    parser = build_parser("cifar10")
    here = keras.distribution.list_devices()
    with pytest.raises(UsageError, match=(
            rf"--devices: {len(here) + 1} devices asked for, {len(here)} "
            rf"here \({', '.join(here)}\)")):
        Settings.resolve("cifar10", vars(parser.parse_args(
            ["--budget", "1k", "--devices", str(len(here) + 1)])))
    with pytest.raises(UsageError, match="--devices: 0 devices asked for"):
        Settings.resolve("cifar10", vars(parser.parse_args(
            ["--budget", "1k", "--devices", "0"])))
    default = Settings.resolve("cifar10", vars(parser.parse_args(
        ["--budget", "1k"])))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
        with pytest.raises(UsageError, match="the recipes run on one host"):
            Settings.resolve("cifar10", vars(parser.parse_args(
                ["--budget", "1k"])))
    assert default.devices == (1 if here[0].startswith("cpu") else len(here))


# The recipe on two logical CPU devices of TensorFlow (MirroredStrategy).
TWO_TF_DEVICES = """
import sys
import tensorflow as tf
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_autorep.recipes.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_quick_recipe_runs_on_two_devices(cifar10_archive, tmp_path):
    # a small given teacher keeps the compile times of CI short
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(8, 3, strides=2, padding="same",
                            activation="relu"),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10)], name="tiny")
    teacher.save(tmp_path / "teacher.keras")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-c", TWO_TF_DEVICES, "--quick", "--devices", "2",
         "--budget", "1k", "--subset", "128,64", "--epochs", "1",
         "--finetune-epochs", "1",
         "--teacher", str(tmp_path / "teacher.keras"),
         "--data-dir", str(cifar10_archive), "--out", str(out),
         "--cache-dir", str(tmp_path / "cache"), "--allow-unstable"],
        env={**os.environ, "KERAS_BACKEND": "tensorflow",
             "TF_CPP_MIN_LOG_LEVEL": "3",
             "PYTHONPATH": str(HERE.parents[1])},
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Devices: data-parallel on 2 (cpu:0, cpu:1), global batch 64" \
        in result.stdout
    export = out / "cifar10_tiny_1k_quick" / "1"
    report = json.loads((export / "report.json").read_text())
    assert report["relu_count"] == report["budget"] == 1000
    assert (export / "saved_model.pb").is_file()
    assert (export / "model.onnx").is_file()
