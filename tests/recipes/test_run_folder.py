"""One run folder, one writer: the lock, ``--wait``, repairs after a kill,
standard JSON records."""

import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keras_autorep.recipes.run_folder import (
    RunFolder,
    hold_lock,
    read_json,
    read_log,
    write_json,
)
from keras_autorep.recipes.settings import UsageError

REPO = Path(__file__).resolve().parents[2]
TF_ENV = {**os.environ, "KERAS_BACKEND": "tensorflow"}
OWNER = f"pid {os.getpid()} on {socket.gethostname()}"


def test_records_are_standard_json(tmp_path):
    path = tmp_path / "record.json"
    write_json(path, {"loss": [1.5, math.nan, -math.inf], "lr": 1e-3})
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    assert read_json(path) == {"loss": [1.5, None, None], "lr": 1e-3}
    assert not list(tmp_path.glob("*.tmp-*"))
    path.write_text('{"budget_weight": NaN}')  # what json.dumps writes
    with pytest.raises(ValueError, match="not valid JSON"):
        read_json(path)


def test_settings_file_must_be_valid_json(tmp_path):
    folder = RunFolder(tmp_path, "run")
    folder.path.mkdir(parents=True)
    (folder.path / "settings.json").write_text('{"lr": Infinity}')
    with pytest.raises(UsageError, match=r"settings\.json is not valid JSON "
                       ".*: delete the folder or pass another --run-name"):
        folder.check_settings({"lr": math.inf})
    (folder.path / "settings.json").unlink()
    (folder.path / "search").mkdir()
    with pytest.raises(UsageError, match="holds files but no settings.json"):
        folder.check_settings({"lr": 1e-3})


def test_claim_locks_repairs_and_records(tmp_path):
    key = {"lr": 1e-3, "epochs": 4}
    folder = RunFolder(tmp_path, "run")
    (folder.path / "search").mkdir(parents=True)
    write_json(folder.path / "settings.json", key)
    (folder.path / "search" / "log.csv").write_text(
        "epoch,loss\r\n0,2.5\r\n1,2.")  # cut short by a kill
    leftovers = [folder.path / "result.json.tmp-4242",
                 folder.path / "search" / "tmp-4242-student.keras"]
    for path in leftovers:
        path.write_text("partial")
    folder.claim(key)
    try:
        assert read_log(folder.path / "search" / "log.csv") == {
            "epoch": [0], "loss": [2.5]}
        assert not any(path.exists() for path in leftovers)
        other = RunFolder(tmp_path, "run")
        with pytest.raises(UsageError, match=(
                f"run folder {folder.path} is in use by {OWNER}: wait for it "
                "to finish, pass --wait")):
            other.claim(key)
    finally:
        folder.release()
    other.claim(key)  # free again
    other.release()
    with pytest.raises(UsageError, match="lr differ"):
        RunFolder(tmp_path, "run").claim({"lr": 1e-2, "epochs": 4})
    new = RunFolder(tmp_path, "new")
    new.claim(key)
    new.release()
    assert read_json(new.path / "settings.json") == key


def recipe(*args):
    return subprocess.Popen(
        [sys.executable, str(REPO / "recipes" / "cifar10.py"), *args],
        cwd=REPO, env=TF_ENV, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def wait_for(condition, what, timeout=240):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def read_until(process, start):
    """The first stdout line of ``process`` that starts with ``start``."""
    for line in process.stdout:
        if line.startswith(start):
            return line
    raise AssertionError(f"no line starting with {start!r}: "
                         + process.stderr.read()[-2000:])


def test_two_commands_on_one_run_folder(cifar10_archive, data_cache_dir,
                                        tmp_path):
    """Real processes: the second command stops at once (exit 2) naming the
    first; with --wait it waits and finds the run finished; a run with
    another name waits for the teacher it needs while that is written."""
    out = tmp_path / "out"
    args = ["--quick", "--subset", "256,128", "--teacher-epochs", "1",
            "--epochs", "1", "--budget", "5%", "--data-dir",
            str(cifar10_archive), "--cache-dir", str(data_cache_dir),
            "--out", str(out)]
    name = "cifar10_resnet_small_5pct_quick"
    lock = out / "runs" / f"{name}.lock"
    first = recipe(*args)
    wait_for(lambda: lock.is_file() and f"pid {first.pid} " in
             lock.read_text(), "the first command's lock")
    second = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "cifar10.py"), *args],
        cwd=REPO, env=TF_ENV, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2, second.stderr
    errors = [line for line in second.stderr.splitlines()
              if ": error: " in line]
    assert len(errors) == 1 and (
        f"is in use by pid {first.pid} on {socket.gethostname()}: wait for "
        "it to finish, pass --wait") in errors[0], second.stderr
    waiting = recipe(*args, "--wait")
    first_out, first_err = first.communicate(timeout=600)
    assert first.returncode == 0, first_out[-2000:] + first_err[-2000:]
    waited_out, waited_err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, waited_err[-2000:]
    assert f"Waiting for pid {first.pid} on " in waited_out
    assert "already finished" in waited_out
    assert sorted(p.name for p in (out / name).iterdir()) == [".lock", "1"]
    assert read_json(out / "runs" / name / "settings.json")["epochs"] == 1

    # Hold the teacher's lock here, as a run training it would.
    (teacher_lock,) = (out / "teachers").glob("*.lock")
    held = hold_lock(teacher_lock, "teacher", wait=False)
    try:
        other = recipe(*args, "--run-name", "other")
        notice = read_until(other, "Waiting for")
        assert notice.startswith(f"Waiting for {OWNER}, which works on "
                                 "teacher "), notice
        time.sleep(1)
        assert other.poll() is None  # still waiting
    finally:
        held.release()
    assert read_until(other, "Teacher:").startswith("Teacher: reusing")
    other.kill()
    other.communicate()
