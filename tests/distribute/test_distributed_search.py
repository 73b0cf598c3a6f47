"""Distributed search with keras-tuner's own chief/worker mode: a chief and
two workers on 127.0.0.1 (each a fresh process, with a hard timeout)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TRIALS = {"allocation": 3, "cryptonas": 4}
TIMEOUT = 240


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(search, directory, tuner_id, port):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow",
           "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(HERE.parents[1]),
           "KERASTUNER_TUNER_ID": tuner_id,
           "KERASTUNER_ORACLE_IP": "127.0.0.1",
           "KERASTUNER_ORACLE_PORT": str(port)}
    return subprocess.Popen(
        [sys.executable, str(HERE / "tuner_check.py"), search,
         str(directory)], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def finish(processes):
    """``{tuner id: stdout}``; every process is killed at the timeout."""
    outputs = {}
    try:
        for tuner_id, process in processes.items():
            out, err = process.communicate(timeout=TIMEOUT)
            assert process.returncode == 0, f"{tuner_id}: {err[-3000:]}"
            outputs[tuner_id] = out
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return outputs


def recorded_trials(project):
    """The trial records keras-tuner wrote: ``{trial_id: trial.json}``."""
    trials = {}
    for path in sorted(project.glob("trial_*/trial.json")):
        trial = json.loads(path.read_text())
        assert trial["trial_id"] not in trials
        trials[trial["trial_id"]] = trial
    return trials


@pytest.mark.parametrize("search", ["allocation", "cryptonas"])
def test_chief_and_two_workers_search_on_localhost(search, tmp_path):
    port = free_port()
    processes = {tuner_id: start(search, tmp_path, tuner_id, port)
                 for tuner_id in ("chief", "tuner0", "tuner1")}
    outputs = finish(processes)
    chief = json.loads(outputs["chief"].strip().splitlines()[-1])["result"]
    for worker in ("tuner0", "tuner1"):
        assert json.loads(outputs[worker].strip().splitlines()[-1]) == {
            "result": None}  # workers leave the result to the chief

    project = tmp_path / search
    trials = recorded_trials(project)
    assert len(trials) == TRIALS[search]
    values = [json.dumps(t["hyperparameters"]["values"], sort_keys=True)
              for t in trials.values()]
    assert len(set(values)) == len(values)  # no candidate twice
    completed = [t for t in trials.values() if t["status"] == "COMPLETED"]
    trained = (tmp_path / "trained.txt").read_text().split()
    # each completed trial trained once, by a worker, never by the chief
    assert len(trained) == len(completed) and "chief" not in trained
    best = max(completed, key=lambda t: t["score"])["hyperparameters"][
        "values"]
    if search == "allocation":
        assert len(completed) == TRIALS[search]
        best_id = max(completed, key=lambda t: t["score"])["trial_id"]
        assert chief["counts"] == chief["by_trial"][best_id]
        assert sum(chief["counts"].values()) > 0
    else:
        assert len(completed) == 2  # x2 width rejected before training
        assert chief == best


def test_a_worker_of_a_recipe_without_a_search_is_a_usage_error(
        monkeypatch):
    from keras_autorep.recipes.cli import build_parser
    from keras_autorep.recipes.settings import Settings, UsageError

    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(free_port()))
    parser = build_parser("cifar10")
    with pytest.raises(UsageError, match="only --allocation tuned"):
        Settings.resolve("cifar10", vars(parser.parse_args(
            ["--budget", "1k"])))
    tuned = Settings.resolve("cifar10", vars(parser.parse_args(
        ["--budget", "1k", "--allocation", "tuned"])))
    assert tuned.allocation == "tuned"
