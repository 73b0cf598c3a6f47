"""The run folder ``<out>/runs/<run name>/``: settings, stages, resume.

Training stages and phases (``teacher``, ``search``, ``identify``,
``finetune``, ``train``) write to ``<run folder>/<stage>/``: ``log.csv``
(one row per epoch), ``backup/`` (``keras.callbacks.BackupAndRestore``:
weights, optimizer state and epoch, so a killed run continues from its
last finished epoch when the same command is run again) and TensorBoard
logs in ``<run folder>/tensorboard/<stage>``. ``settings.json`` holds the
settings the run was started with; ``result.json`` marks a finished run.
"""

import csv
import importlib.util
import json
import os
import shutil
from pathlib import Path

import keras

from keras_autorep.recipes.settings import UsageError
from keras_autorep.training.callbacks import EpochTimer, ResumeNotice


def write_json(path, data):
    """Write JSON through a temporary file (never half-written)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def save_atomic(model, path):
    """``model.save(path)`` through a temporary file, so a killed run never
    leaves a half-written model behind."""
    path = Path(path)
    tmp = path.with_name(f"tmp-{os.getpid()}-{path.name}")
    model.save(tmp)
    os.replace(tmp, path)


def read_log(path):
    """The per-epoch history in a ``CSVLogger`` file, one row per epoch.

    An epoch that was logged and then redone after a resume keeps its last
    row.
    """
    if not Path(path).is_file():
        return {}
    with open(path, newline="") as f:
        rows = {int(row["epoch"]): row for row in csv.DictReader(f)}
    history = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            history.setdefault(key, []).append(
                int(value) if key == "epoch" else float(value))
    return history


def tensorboard_callback(log_dir):
    """``keras.callbacks.TensorBoard``, or ``None`` where TensorFlow or the
    tensorboard package is missing.

    Under another Keras backend TensorFlow only writes the logs, so it is
    kept off the GPUs.
    """
    if importlib.util.find_spec("tensorboard") is None:
        return None
    try:
        import tensorflow as tf
    except ImportError:
        return None
    if keras.backend.backend() != "tensorflow":
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # devices already initialised (tfds loading)
            pass
    return keras.callbacks.TensorBoard(str(log_dir), write_graph=False)


class RunFolder:
    """One run's folder ``<out>/runs/<run_name>``.

    Args:
        out: the recipe's ``--out`` folder.
        run_name: the run's name (already checked).
    """

    def __init__(self, out, run_name):
        self.name = run_name
        self.path = Path(out) / "runs" / run_name

    def check_settings(self, key):
        """Record ``key`` (the run's training settings) in a new folder, or
        check that an existing folder was started with the same ones."""
        settings_file = self.path / "settings.json"
        if settings_file.is_file():
            old = json.loads(settings_file.read_text())
            changed = sorted(k for k in key.keys() | old.keys()
                             if key.get(k) != old.get(k))
            if changed:
                raise UsageError(
                    f"run folder {self.path} was started with other "
                    f"settings ({', '.join(changed)} differ): rerun it with "
                    "the same flags or pass a new --run-name")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            write_json(settings_file, key)

    def stage(self, name):
        """The folder of a stage or phase."""
        return self.path / name

    def callbacks(self, stage, epochs):
        """Per-epoch log, TensorBoard and backup/restore of one training
        stage or phase, in ``<run folder>/<stage>``."""
        stage_dir = self.stage(stage)
        backup_dir = stage_dir / "backup"
        callbacks = [
            EpochTimer(),
            keras.callbacks.CSVLogger(str(stage_dir / "log.csv"),
                                      append=True),
        ]
        tensorboard = tensorboard_callback(self.path / "tensorboard" / stage)
        if tensorboard is not None:
            callbacks.append(tensorboard)
        else:
            print("No TensorBoard logs: they need TensorFlow and the "
                  "tensorboard package; per-epoch values are in "
                  f"{stage_dir / 'log.csv'}", flush=True)
        callbacks += [
            keras.callbacks.BackupAndRestore(
                str(backup_dir), double_checkpoint=True,
                delete_checkpoint=False),
            ResumeNotice(stage, backup_dir, epochs),
        ]
        stage_dir.mkdir(parents=True, exist_ok=True)
        return callbacks

    def log(self, stage):
        """The per-epoch history of a stage (``read_log``)."""
        return read_log(self.stage(stage) / "log.csv")

    def drop_backups(self, stages):
        """Remove the backups of finished stages."""
        for stage in stages:
            shutil.rmtree(self.stage(stage) / "backup", ignore_errors=True)

    def save_trained(self, model, path, stages):
        """Save the model a training stage produced (atomically) and drop
        the backups of its phases ``stages``, which the model supersedes."""
        path.parent.mkdir(parents=True, exist_ok=True)
        save_atomic(model, path)
        self.drop_backups(stages)

    def trained_model(self, path, train, phases, label):
        """The model a training stage saved at ``path``, or ``train()``'s,
        then saved there (``save_trained`` with the stage's ``phases``)."""
        if path.is_file():
            print(f"{label}: reusing {path}", flush=True)
            return keras.saving.load_model(path, compile=False)
        model = train()
        self.save_trained(model, path, phases)
        return model

    def finished_report(self):
        """The report of a finished run, or ``None``."""
        result_file = self.path / "result.json"
        if not result_file.is_file():
            return None
        export_dir = Path(json.loads(result_file.read_text())["export"])
        report_file = export_dir / "report.json"
        if not report_file.is_file():
            return None
        return json.loads(report_file.read_text())

    def run_once(self, stages):
        """``stages()``'s report, the run then marked finished; or the
        report of the run that already finished, with a notice."""
        finished = self.finished_report()
        if finished is not None:
            print(f"Run {self.name!r} already finished; delete {self.path} "
                  "or pass another --run-name to run it again.")
            return finished
        report = stages()
        write_json(self.path / "result.json",
                   {"export": report["export"]["dir"]})
        return report
