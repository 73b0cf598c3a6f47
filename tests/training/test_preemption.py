"""SIGTERM or SIGINT during a run: the step reached is saved, the process
exits with a one-line message and 128 + the signal's number, and the same
command resumes at that step, seeing the batches an uninterrupted run
sees (``StepCheckpoint``, ``preemption``, ``keras_autorep.data.epochs``)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from image_trees import write_tree  # tests/ helpers
from keras_autorep.data.epochs import EpochPosition
from keras_autorep.training import preemption
from keras_autorep.training.checkpoints import METADATA, StepCheckpoint
from keras_autorep.training.preemption import Preempted, stop_on_signals

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ENV = {**os.environ, "KERAS_BACKEND": "tensorflow",
       "PYTHONPATH": os.pathsep.join(
           [str(REPO), os.environ.get("PYTHONPATH", "")])}


def streamed_fit(tree, out, *options):
    """``streamed_fit.py``: 3 epochs of 4 steps (15 images, batch 4)."""
    return subprocess.run(
        [sys.executable, str(HERE / "streamed_fit.py"), str(tree), str(out),
         *options], env=ENV, capture_output=True, text=True, timeout=300)


def last_line(result):
    return result.stderr.strip().splitlines()[-1]


def test_stopped_and_killed_mid_epoch_a_fit_resumes_to_the_same_weights(
        tmp_path):
    tree = write_tree(tmp_path / "tree", train=5)
    reference = streamed_fit(tree, tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr[-2000:]
    out = tmp_path / "run"
    stopped = streamed_fit(tree, out, "--every", "1", "--signal", "TERM",
                           "0", "2")
    assert stopped.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in stopped.stderr
    assert last_line(stopped) == (
        "streamed_fit.py: stopped by SIGTERM; saved the teacher stage at "
        "epoch 1/3, batch 2/4")
    # SIGKILL runs no code: the run goes on from its last checkpoint,
    # saved every step (--every 1) up to batch 2 of epoch 2.
    killed = streamed_fit(tree, out, "--every", "1", "--signal", "KILL",
                          "1", "3")
    assert killed.returncode == -signal.SIGKILL
    assert ("Resuming the teacher stage at batch 2/4 of epoch 1/3: "
            "optimizer step 2,") in killed.stdout
    resumed = streamed_fit(tree, out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert ("Resuming the teacher stage at batch 2/4 of epoch 2/3: "
            "optimizer step 6,") in resumed.stdout
    assert "ran out of data" not in resumed.stderr
    expected = np.load(tmp_path / "reference" / "weights.npz")
    weights = np.load(out / "weights.npz")
    for name in expected:
        np.testing.assert_allclose(weights[name], expected[name],
                                   rtol=1e-6, atol=1e-7)


def test_signals_stop_at_once_outside_a_fit_and_after_its_step_in_it():
    with stop_on_signals():
        with pytest.raises(Preempted) as stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        assert stop.value.exit_status == 130
        assert stop.value.message() == "stopped by SIGINT"
        preemption.defer()
        os.kill(os.getpid(), signal.SIGTERM)
        assert preemption.requested() == signal.SIGTERM
        with pytest.raises(Preempted) as stop:
            os.kill(os.getpid(), signal.SIGTERM)  # a second one: at once
            time.sleep(5)
        with pytest.raises(Preempted) as stop:
            preemption.stop_deferring("the step")
        assert stop.value.exit_status == 143
        assert stop.value.message() == "stopped by SIGTERM; saved the step"
        preemption.stop_deferring()  # nothing pending: no exception
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_backup_of_keras_backup_and_restore_resumes_after_its_epoch(
        tmp_path, capsys):
    """Run folders of earlier versions were backed up at epoch ends by
    ``keras.callbacks.BackupAndRestore``."""
    x = np.random.default_rng(0).random((8, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)

    def model():
        keras.utils.set_random_seed(1)
        built = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        built.compile(keras.optimizers.SGD(0.1), "mse")
        return built

    first = model()
    first.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[
        keras.callbacks.BackupAndRestore(tmp_path, delete_checkpoint=False)])
    second = model()
    checkpoint = StepCheckpoint(tmp_path, EpochPosition(), stage="search")
    second.fit(x, y, batch_size=4, epochs=2, verbose=0,
               callbacks=[checkpoint])
    assert ("Resuming the search stage after epoch 1/2: optimizer step 2,"
            in capsys.readouterr().out)
    assert int(second.optimizer.iterations) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch2-batch0.weights.h5", METADATA]
