"""The run folder ``<out>/runs/<run name>/``: settings, stages, resume.

Training stages and phases (``teacher``, ``search``, ``identify``,
``finetune``, ``train``) write to ``<run folder>/<stage>/``: ``log.csv``
(one row per epoch), ``backup/`` (``StepCheckpoint``: weights, optimizer
state, epoch and batch, saved at epoch ends, every ``--checkpoint-every``
steps and on SIGTERM or SIGINT, so that the same command run again goes on
at the step it reached) and TensorBoard logs in
``<run folder>/tensorboard/<stage>``. ``settings.json`` holds the
settings the run was started with; ``result.json`` marks a finished run.

One command works on a run folder at a time: it holds the lock
``<out>/runs/<run name>.lock`` (``filelock``; the operating system drops it
when the process ends, however it ends) from ``claim`` to ``release``.
Holding it, the command first repairs what a killed command left behind.
"""

import csv
import importlib.util
import json
import math
import os
import re
import shutil
import socket
from pathlib import Path

import keras
from filelock import FileLock, Timeout

from keras_autorep.backends import current
from keras_autorep.recipes.settings import UsageError
from keras_autorep.training.callbacks import EpochTimer
from keras_autorep.training.checkpoints import StepCheckpoint

# Files ``write_json`` and ``save_atomic`` write before renaming them.
_TEMPORARY = re.compile(r"(\.tmp-\d+|^tmp-\d+-.+)$")


def remove_temporary_files(paths):
    """Remove, among ``paths``, the temporary files of ``write_json`` and
    ``save_atomic`` (left by a killed process; call it holding the lock of
    their folder)."""
    for path in paths:
        if _TEMPORARY.search(path.name) and path.is_file():
            path.unlink()


def _finite(data):
    """``data`` with every non-finite float replaced by ``None``."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(value) for value in data]
    return data


def write_json(path, data):
    """Write ``data`` as standard JSON through a temporary file (never
    half-written); a non-finite number (e.g. a diverged loss) is ``null``."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(_finite(data), indent=2, allow_nan=False)
                   + "\n")
    os.replace(tmp, path)


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def read_json(path):
    """The data of a JSON file; ``ValueError`` unless it is standard JSON
    (``NaN`` and ``Infinity`` are not)."""
    try:
        return json.loads(Path(path).read_text(),
                          parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None


def read_record(path):
    """``read_json(path)``, or ``None`` when the file is missing or damaged
    (said once, so the run recomputes what it held)."""
    if not Path(path).is_file():
        return None
    try:
        return read_json(path)
    except ValueError as e:
        print(f"Ignoring {e}; it is computed again.", flush=True)
        return None


def _write_owner(fd):
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())


def hold_lock(path, what, wait):
    """Acquire the ``FileLock`` at ``path`` and return it.

    Args:
        path: the lock file.
        what: what the lock guards, for messages.
        wait: wait for another holder (with a notice) instead of raising
            ``UsageError``.
    """
    lock = FileLock(path, on_acquired=_write_owner)
    try:
        lock.acquire(timeout=0)
        return lock
    except Timeout:
        try:
            owner = Path(path).read_text().strip() or "another process"
        except OSError:
            owner = "another process"
    if not wait:
        raise UsageError(
            f"{what} is in use by {owner}: wait for it to finish, pass "
            "--wait to wait for it, or pass another --run-name")
    print(f"Waiting for {owner}, which works on {what}.", flush=True)
    lock.acquire()
    return lock


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
    if current().name != "tensorflow":
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
        self._lock = None

    def check_settings(self, key):
        """``UsageError`` unless the folder is new or was started with the
        training settings ``key``; writes nothing."""
        settings_file = self.path / "settings.json"
        if not settings_file.is_file():
            if self.path.is_dir() and any(not _TEMPORARY.search(p.name)
                                          for p in self.path.iterdir()):
                raise UsageError(
                    f"run folder {self.path} holds files but no "
                    "settings.json, so they cannot be resumed safely: "
                    "delete it or pass another --run-name")
            return
        try:
            old = read_json(settings_file)
        except ValueError as e:
            raise UsageError(f"run folder {self.path}: {e}: delete the "
                             "folder or pass another --run-name") from None
        changed = sorted(k for k in key.keys() | old.keys()
                         if key.get(k) != old.get(k))
        if changed:
            raise UsageError(
                f"run folder {self.path} was started with other "
                f"settings ({', '.join(changed)} differ): rerun it with "
                "the same flags or pass a new --run-name")

    def claim(self, key, wait=False):
        """Take the run folder for this command: its lock (``hold_lock``),
        the settings check, repairs, and ``key`` recorded in a new folder.
        Call ``release`` when the command is done."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"--out: cannot create {self.path.parent} "
                             f"({e.strerror})") from None
        lock = hold_lock(self.path.parent / f"{self.name}.lock",
                         f"run folder {self.path}", wait)
        try:
            self._repair()
            self.check_settings(key)
            self.path.mkdir(exist_ok=True)
            if not (self.path / "settings.json").is_file():
                write_json(self.path / "settings.json", key)
        except BaseException:
            lock.release()
            raise
        self._lock = lock

    def release(self):
        """Let the next command have the run folder."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _repair(self):
        """Undo what a killed command left: temporary files, a log row cut
        short."""
        remove_temporary_files(self.path.rglob("*"))
        for log in self.path.glob("*/log.csv"):
            text = log.read_bytes()
            if text and not text.endswith(b"\n"):
                log.write_bytes(text[:text.rfind(b"\n") + 1])

    def stage(self, name):
        """The folder of a stage or phase."""
        return self.path / name

    def callbacks(self, stage, position, every=0):
        """Per-epoch log, TensorBoard and checkpoints (``StepCheckpoint`` of
        the training pipeline's ``position``, every ``every`` steps) of one
        training stage or phase, in ``<run folder>/<stage>``."""
        stage_dir = self.stage(stage)
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
        callbacks.append(StepCheckpoint(stage_dir / "backup", position,
                                        every, stage))
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
            self.drop_backups(phases)  # left if killed right after saving
            return keras.saving.load_model(path, compile=False)
        model = train()
        self.save_trained(model, path, phases)
        return model

    def mark_finished(self, export_dir):
        """Record that the run exported to ``export_dir`` (``result.json``);
        written before the export is moved into place, so a run killed in
        between exports again rather than twice."""
        write_json(self.path / "result.json", {"export": str(export_dir)})

    def finished_report(self):
        """The report of a finished run, or ``None``."""
        result = read_record(self.path / "result.json")
        if result is None:
            return None
        return read_record(Path(result["export"]) / "report.json")

    def run_once(self, stages):
        """``stages()``'s report (the last stage calls ``mark_finished``);
        or the report of the run that already finished, with a notice."""
        finished = self.finished_report()
        if finished is not None:
            print(f"Run {self.name!r} already finished; delete {self.path} "
                  "or pass another --run-name to run it again.")
            return finished
        return stages()
