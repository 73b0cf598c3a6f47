"""Scratch folders after a kill: ``pi measure``'s (``scratch_folder``) and
an export's staging folder are removed by the next command; SIGTERM
removes them at once."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from keras_autorep.export.contract import write_version
from keras_autorep.pi.scratch import scratch_folder
from keras_autorep.training.preemption import Preempted, stop_on_signals

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(REPO), os.environ.get("PYTHONPATH", "")])}

KILLED_MEASUREMENT = """
import os, signal, sys
from keras_autorep.pi.scratch import scratch_folder
with scratch_folder("measure", sys.argv[1]) as folder:
    (folder / "images.npy").write_bytes(b"half")
    os.kill(os.getpid(), signal.SIGKILL)
"""
RUNNING_MEASUREMENT = """
import sys
from keras_autorep.pi.scratch import scratch_folder
with scratch_folder("measure", sys.argv[1]) as folder:
    print(folder, flush=True)
    sys.stdin.read()
"""
KILLED_EXPORT = """
import os, signal, sys
from keras_autorep.export.contract import write_version
def write(staging, version_dir):
    (staging / "saved_model.pb").write_bytes(b"half")
    os.kill(os.getpid(), signal.SIGKILL)
write_version(sys.argv[1], "model", None, False, write)
"""


def python(code, *args, **options):
    return subprocess.run([sys.executable, "-c", code, *map(str, args)],
                          env=ENV, timeout=120, **options)


def test_a_killed_measurement_leaves_a_folder_the_next_one_removes(
        tmp_path):
    root = tmp_path / "scratch"
    assert python(KILLED_MEASUREMENT, root).returncode == -signal.SIGKILL
    (left,) = [path for path in root.iterdir() if path.is_dir()]
    assert (left / "images.npy").is_file()
    running = subprocess.Popen(
        [sys.executable, "-c", RUNNING_MEASUREMENT, str(root)], env=ENV,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        live = Path(running.stdout.readline().strip())
        with scratch_folder("measure", root) as mine:
            assert not left.exists()  # its command is dead
            assert live.is_dir() and mine.is_dir()  # these are in use
        assert not mine.exists()
    finally:
        running.communicate("", timeout=60)
    assert not live.exists()
    assert list(root.iterdir()) == []  # no folder, no lock file


def test_sigterm_removes_the_scratch_folder_at_once(tmp_path):
    with stop_on_signals(), pytest.raises(Preempted) as stop:
        with scratch_folder("measure", tmp_path) as folder:
            (folder / "images.npy").write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGTERM)
    assert stop.value.exit_status == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_the_next_export_removes_the_staging_folder_of_a_killed_one(
        tmp_path):
    assert python(KILLED_EXPORT, tmp_path).returncode == -signal.SIGKILL
    model_dir = tmp_path / "model"
    (staging,) = [p for p in model_dir.iterdir() if ".staging-" in p.name]
    version = write_version(tmp_path, "model", None, False,
                            lambda folder, _: (folder / "x").write_text(""))
    assert version == model_dir / "1"
    assert sorted(p.name for p in model_dir.iterdir()) == [".lock", "1"]
