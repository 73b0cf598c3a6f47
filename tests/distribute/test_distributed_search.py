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
TIMEOUT = 360


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(directory, tuner_id, ports):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow",
           "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(HERE.parents[1]),
           "KERASTUNER_TUNER_ID": tuner_id,
           "KERASTUNER_ORACLE_IP": "127.0.0.1"}
    return subprocess.Popen(
        [sys.executable, str(HERE / "tuner_check.py"), str(directory),
         *map(str, ports)], env=env, stdout=subprocess.PIPE,
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


def test_chief_and_two_workers_search_on_localhost(tmp_path):
    """A ``tune_allocation`` search, then a CryptoNAS search, in the same
    three processes (one chief, two workers)."""
    ports = (free_port(), free_port())
    processes = {tuner_id: start(tmp_path, tuner_id, ports)
                 for tuner_id in ("chief", "tuner0", "tuner1")}
    outputs = {tuner_id: json.loads(out.strip().splitlines()[-1])
               for tuner_id, out in finish(processes).items()}
    for worker in ("tuner0", "tuner1"):  # the chief reports the results
        assert outputs[worker] == {"allocation": None, "cryptonas": None}
    for search in ("allocation", "cryptonas"):
        chief = outputs["chief"][search]
        trials = recorded_trials(tmp_path / search)
        assert len(trials) == TRIALS[search]
        values = [json.dumps(t["hyperparameters"]["values"], sort_keys=True)
                  for t in trials.values()]
        assert len(set(values)) == len(values)  # no candidate twice
        completed = [t for t in trials.values()
                     if t["status"] == "COMPLETED"]
        trained = (tmp_path / f"trained-{search}.txt").read_text().split()
        # each completed trial trained once, by a worker, never the chief
        assert len(trained) == len(completed) and "chief" not in trained
        top = max(t["score"] for t in completed)  # ties on tiny data
        best = [t for t in completed if t["score"] == top]
        if search == "allocation":
            assert len(completed) == TRIALS[search]
            assert chief["counts"] in [chief["by_trial"][t["trial_id"]]
                                       for t in best]
            assert sum(chief["counts"].values()) > 0
        else:
            assert len(completed) == 2  # x2 width rejected, never trained
            assert chief in [t["hyperparameters"]["values"] for t in best]


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
