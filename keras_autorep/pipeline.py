"""End-to-end recipe: teacher, budget search, hardening, export.

``python recipes/cifar10.py --budget 12.9k`` calls ``main(dataset="cifar10")``.
Stages, each skipped on a rerun once it has finished:

1. **teacher**: the all-ReLU model (``keras.Input`` -> dataset normalisation
   -> backbone), trained with SGD + momentum and cosine decay, or loaded with
   ``--teacher``. Trained teachers are cached in
   ``<out>/teachers/<model>_<dataset>_<hash>.keras`` (hash of the data and
   teacher settings) and reused by later runs.
2. **search** (``--method``): AutoReP trains ``replace_relus(teacher)``
   with ``BudgetTrainer`` (cross-entropy + distillation from the teacher +
   budget loss); SNL and SENet train with ``train_snl``/``train_senet``
   (search or mask identification, then fine-tuning with frozen masks).
   Adam with cosine decay to 1e-5 in every phase. ``--allocation`` first
   splits the budget across layers (``keras_autorep.allocation``): it seeds
   AutoReP's masks, fixes SNL's binarisation per layer and gives SENet its
   per-layer counts. The result is ``<run dir>/search/student.keras``.
3. **harden**: ``harden(student, budget)`` (never above the budget) and test
   accuracy (top-1, and top-5 with more than 10 classes).
4. **export**: ``export_all`` to ``<out>/<run name>/<version>/`` plus
   ``report.json`` and PNG plots in the same folder.

Training stages and phases (``teacher``, ``search``, ``identify``,
``finetune``) write to ``<out>/runs/<run name>/<stage>/``: ``log.csv`` (one
row per epoch), ``backup/`` (``keras.callbacks.BackupAndRestore``: weights,
optimizer state and epoch, so a killed run continues from its last finished
epoch when the same command is run again) and TensorBoard logs in
``<out>/runs/<run name>/tensorboard/<stage>``.
"""

import argparse
import csv
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np

import keras_autorep
from keras_autorep.budget import parse_budget
from keras_autorep.conversion import harden, replace_relus
from keras_autorep.counting import count_relus
from keras_autorep.data import (
    DataUnavailableError,
    load_dataset,
    make_datasets,
    normalization_layer,
)
from keras_autorep.models import MODELS, get_model
from keras_autorep.methods import train_senet, train_snl
from keras_autorep.pi import cost_report
from keras_autorep.plots import plot_history, plot_relus_per_layer
from keras_autorep.training import BudgetTrainer


@dataclasses.dataclass(frozen=True)
class DatasetPreset:
    """Paper-schedule defaults of one dataset (DESIGN.md section 5)."""

    model: str
    epochs: int
    teacher_epochs: int
    budget_weight: float


DATASET_PRESETS = {
    "cifar10": DatasetPreset("resnet18", 200, 400, 100.0),
    "cifar100": DatasetPreset("resnet18", 200, 400, 100.0),
    "tiny_imagenet": DatasetPreset("resnet18", 80, 200, 200.0),
}
DEFAULTS = dict(batch_size=128, lr=1e-3, teacher_lr=0.1, weight_decay=5e-4)
# Quick: batch 64 doubles the optimizer steps per image, and lr 4e-3 moves
# the indicators alpha (uniform in (0, 1) at the start, ~lr per Adam step)
# far enough for the ReLU count to reach the budget within the run.
QUICK_PRESET = dict(
    model="resnet_small",
    subset=(10_000, 2_000),
    epochs=4,
    teacher_epochs=4,
    batch_size=64,
    lr=4e-3,
)
QUICK_FINETUNE_EPOCHS = 2
QUICK_TUNER_TRIALS = 3
FINAL_LR = 1e-5
METHODS = ("autorep", "snl", "senet")
ALLOCATIONS = ("free", "uniform", "sensitivity", "tuned")
# The allocation a method uses when --allocation is not given.
DEFAULT_ALLOCATION = {"autorep": "free", "snl": "free", "senet": "sensitivity"}
# Training phases after the allocation, per method (stage folder names).
PHASES = {"autorep": ("search",), "snl": ("search", "finetune"),
          "senet": ("identify", "finetune")}
SENSITIVITY_STEPS = 20  # batches of training data for --allocation sensitivity
VALIDATION_FRACTION = 0.1  # of the training images, for --allocation tuned
MOMENTUM = 0.9
RESERVED_NAMES = ("runs", "teachers")


class UsageError(ValueError):
    """Bad input found before training; reported like an argparse error."""


# ------------------------------------------------------------------ settings


def budget_argument(text):
    """argparse type: check a budget's syntax; it is resolved once the
    model's ReLU count is known."""
    is_percentage = text.strip().endswith("%")
    try:
        parse_budget(text, total=100 if is_percentage else None)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text.strip()


def subset_argument(text):
    """argparse type: ``N_TRAIN,N_TEST`` positive image counts."""
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0
                                  for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected N_TRAIN,N_TEST (positive integers), got {text!r}")
    return tuple(int(p) for p in parts)


def add_run_arguments(parser, quick_subset, default_run_name):
    """The data, output, run-name and seed flags every recipe shares."""
    add = parser.add_argument
    add("--data-dir", default=None,
        help="dataset folder or .tar.gz archive (e.g. "
             "../shared/data/cifar10-images.tar.gz); default: "
             "tensorflow-datasets")
    add("--cache-dir", default=None,
        help="cache of decoded images (default ~/.cache/keras_autorep)")
    add("--subset", type=subset_argument, default=None,
        metavar="N_TRAIN,N_TEST",
        help="use a class-balanced sample of N_TRAIN train and N_TEST "
             f"test images (--quick: {quick_subset[0]},{quick_subset[1]})")
    add("--out", default="saved_models",
        help="base folder of the exports and of the working files "
             "(<out>/runs/, <out>/teachers/) (default saved_models)")
    add("--run-name", default=None,
        help=f"run folder and export name (default {default_run_name}); "
             "rerunning a name resumes it")
    add("--seed", type=int, default=0, help="random seed (default 0)")


def build_parser(dataset):
    """The command line of the ``dataset`` recipe."""
    preset = DATASET_PRESETS[dataset]
    parser = argparse.ArgumentParser(
        prog=f"recipes/{dataset}.py",
        description=(
            f"AutoReP on {dataset}: train (or load) an all-ReLU teacher, "
            "search which ReLUs to keep within --budget, harden, evaluate "
            "and export the model with a report."),
    )
    add = parser.add_argument
    add("--budget", required=True, type=budget_argument,
        help="ReLU budget: 12900, 12.9k, 1.2M or a percentage of the "
             "model's ReLUs such as 2.5%%; 0 keeps no ReLU")
    add("--model", choices=sorted(MODELS), default=None,
        help=f"backbone (default {preset.model}; resnet_small with --quick)")
    add("--epochs", type=int, default=None,
        help=f"search epochs (default {preset.epochs})")
    add("--teacher-epochs", type=int, default=None,
        help=f"teacher epochs (default {preset.teacher_epochs})")
    add("--batch-size", type=int, default=None,
        help=f"batch size (default {DEFAULTS['batch_size']})")
    add("--lr", type=float, default=None,
        help=f"search Adam learning rate, cosine decay to {FINAL_LR:g} "
             f"(default {DEFAULTS['lr']:g})")
    add("--teacher-lr", type=float, default=None,
        help="teacher SGD learning rate, cosine decay to 0 "
             f"(default {DEFAULTS['teacher_lr']:g})")
    add("--weight-decay", type=float, default=None,
        help="teacher weight decay, PyTorch convention (L2 of wd/2 on the "
             f"kernels) (default {DEFAULTS['weight_decay']:g})")
    add("--lambda", dest="budget_weight", metavar="LAMBDA", type=float,
        default=None,
        help=f"weight of the budget loss (default {preset.budget_weight:g})")
    add("--method", choices=METHODS, default="autorep",
        help="how ReLUs are removed: autorep (default; ReLU or polynomial "
             "per position), snl (L1 masks, linear in place of ReLU) or "
             "senet (sensitivity, mask identification, fine-tuning)")
    add("--allocation", choices=ALLOCATIONS, default=None,
        help="per-layer split of the budget before the search: free (the "
             "method decides; default for autorep and snl), uniform, "
             "sensitivity (default for senet) or tuned (keras-tuner search "
             "on a validation split of the training images)")
    add("--finetune-epochs", type=int, default=None,
        help="snl and senet: fine-tuning epochs with frozen masks after "
             f"the {{search,identify}} phase of --epochs (default "
             f"{{epochs}}; {QUICK_FINETUNE_EPOCHS} with --quick)")
    add("--tuner-trials", type=int, default=None,
        help="--allocation tuned: keras-tuner trials of one epoch each "
             f"(default 8; {QUICK_TUNER_TRIALS} with --quick)")
    add_run_arguments(parser, quick_subset=QUICK_PRESET["subset"],
                      default_run_name="<dataset>_<model>_<budget>[_<method>]"
                                       "[_<allocation>][_quick]")
    add("--teacher", default=None,
        help="a .keras all-ReLU teacher taking [0, 1] images; skips "
             "teacher training (the student copies its architecture)")
    add("--quick", action="store_true",
        help="CPU smoke preset: resnet_small, 10k/2k images, "
             f"{QUICK_PRESET['teacher_epochs']}+{QUICK_PRESET['epochs']} "
             f"epochs, batch {QUICK_PRESET['batch_size']}, lr "
             f"{QUICK_PRESET['lr']:g}; explicit flags still win")
    return parser


@dataclasses.dataclass(frozen=True)
class Settings:
    """Resolved recipe settings (command line + dataset and quick presets)."""

    dataset: str
    budget: str
    model: str
    epochs: int
    teacher_epochs: int
    batch_size: int
    lr: float
    teacher_lr: float
    weight_decay: float
    budget_weight: float
    method: str
    allocation: str
    finetune_epochs: int
    tuner_trials: int
    data_dir: str
    cache_dir: str
    subset: tuple
    out: str
    run_name: str
    teacher: str
    seed: int
    quick: bool

    @classmethod
    def from_args(cls, args, dataset):
        preset = dataclasses.asdict(DATASET_PRESETS[dataset])
        defaults = {**preset, **DEFAULTS, "subset": None}
        if args.quick:
            defaults.update(QUICK_PRESET)
        values = {key: getattr(args, key) for key in
                  ("budget", "method", "data_dir", "cache_dir", "out",
                   "run_name", "teacher", "seed", "quick")}
        for key, default in defaults.items():
            given = getattr(args, key, None)
            values[key] = default if given is None else given
        values["allocation"] = (args.allocation
                                or DEFAULT_ALLOCATION[args.method])
        if args.method == "senet" and values["allocation"] == "free":
            raise UsageError("--method senet needs per-layer ReLU counts: "
                             "--allocation sensitivity, uniform or tuned")
        values["finetune_epochs"] = (
            args.finetune_epochs if args.finetune_epochs is not None
            else QUICK_FINETUNE_EPOCHS if args.quick else values["epochs"])
        values["tuner_trials"] = (
            args.tuner_trials if args.tuner_trials is not None
            else QUICK_TUNER_TRIALS if args.quick else 8)
        for key in ("epochs", "teacher_epochs", "batch_size", "tuner_trials"):
            if values[key] < 1:
                raise UsageError(f"--{key.replace('_', '-')} must be >= 1")
        if values["finetune_epochs"] < 0:
            raise UsageError("--finetune-epochs must be >= 0")
        for key in ("lr", "teacher_lr"):
            if not values[key] > 0:
                raise UsageError(f"--{key.replace('_', '-')} must be > 0")
        if values["weight_decay"] < 0 or values["budget_weight"] < 0:
            raise UsageError("--weight-decay and --lambda must be >= 0")
        return cls(dataset=dataset, **values)

    def training_key(self):
        """The settings that define the run's training (resume check)."""
        key = dataclasses.asdict(self)
        for name in ("out", "cache_dir", "run_name"):
            del key[name]
        key["data_dir"] = data_source(self.data_dir)
        key["subset"] = list(self.subset) if self.subset else None
        key["teacher"] = (str(Path(self.teacher).resolve())
                          if self.teacher else None)
        return key

    def teacher_key(self):
        """The settings that define a trained teacher (cache key)."""
        full = self.training_key()
        return {name: full[name] for name in
                ("dataset", "data_dir", "subset", "seed", "model",
                 "teacher_epochs", "batch_size", "teacher_lr",
                 "weight_decay")}


def data_source(data_dir):
    """Identity of the data: the resolved path, or tensorflow-datasets."""
    return str(Path(data_dir).resolve()) if data_dir else "tensorflow-datasets"


def default_run_name(settings, model_name):
    """``<dataset>_<model>_<budget>[_<method>][_<allocation>][_quick]``,
    e.g. cifar10_resnet18_12.9k or cifar10_resnet18_12.9k_snl_uniform;
    the method and allocation appear when they are not the defaults."""
    budget = settings.budget.replace("%", "pct")
    name = f"{settings.dataset}_{model_name}_{budget}"
    if settings.method != "autorep":
        name += f"_{settings.method}"
    if settings.allocation != DEFAULT_ALLOCATION[settings.method]:
        name += f"_{settings.allocation}"
    return name + "_quick" if settings.quick else name


def split_validation(split, fraction, seed):
    """``(fit, validation)``: a seeded random ``fraction`` of the
    ``(x, y)`` arrays ``split`` held out for validation."""
    x, y = split
    order = np.random.default_rng(seed).permutation(len(y))
    held_out = max(1, round(fraction * len(y)))
    fit, validation = order[held_out:], order[:held_out]
    return (x[fit], y[fit]), (x[validation], y[validation])


def merge_phase_logs(logs):
    """One history from the per-epoch logs of consecutive phases: epochs
    numbered on, a ``phase`` entry per epoch, metrics a phase lacks left
    out of that phase's epochs by ``None``."""
    keys = dict.fromkeys(k for _, log in logs for k in log if k != "epoch")
    merged = {"epoch": [], "phase": [], **{key: [] for key in keys}}
    for phase, log in logs:
        for i in range(len(log.get("epoch", []))):
            merged["epoch"].append(len(merged["epoch"]))
            merged["phase"].append(phase)
            for key in keys:
                merged[key].append(log[key][i] if key in log else None)
    return merged


def check_run_name(name):
    """``name`` if it can name a run folder and an export, else UsageError."""
    if (not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name)
            or name in RESERVED_NAMES):
        raise UsageError(
            f"--run-name {name!r}: use letters, digits, '.', '_' and '-', "
            f"not {' or '.join(RESERVED_NAMES)}")
    return name


# ------------------------------------------------------------------ callbacks


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` (wall time incl. validation) to the epoch logs,
    so that ``log.csv`` keeps stage times across resumes."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self._start


class ResumeNotice(keras.callbacks.Callback):
    """Says where a stage resumes once ``BackupAndRestore`` restored it."""

    def __init__(self, stage, backup_dir, epochs):
        super().__init__()
        self.stage = stage
        self.metadata = Path(backup_dir) / "training_metadata.json"
        self.epochs = epochs

    def on_train_begin(self, logs=None):
        if not self.metadata.is_file():
            return
        epoch = json.loads(self.metadata.read_text())["epoch"]
        optimizer = self.model.optimizer
        print(f"Resuming the {self.stage} stage after epoch {epoch}/"
              f"{self.epochs}: optimizer step {int(optimizer.iterations)}, "
              f"learning rate {float(optimizer.learning_rate):.3g}",
              flush=True)


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


# ------------------------------------------------------------------ helpers


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


def evaluate(model, dataset, labels, top5):
    """Test accuracy of a logits model: ``{"top1": ..., ["top5": ...]}``.

    An example whose logits are not all finite (a polynomial network can
    overflow) counts as wrong; their number is added as ``"non_finite"``
    when there are any.
    """
    logits = model.predict(dataset, verbose=0)
    finite_values = np.isfinite(logits)
    finite = np.all(finite_values, axis=-1)
    logits = np.where(finite_values, logits, -np.inf)
    correct = (np.argmax(logits, -1) == labels) & finite
    result = {"top1": float(np.mean(correct))}
    if top5:
        best5 = np.argsort(-logits, axis=-1)[:, :5]
        result["top5"] = float(
            np.mean(np.any(best5 == labels[:, None], -1) & finite))
    if not finite.all():
        result["non_finite"] = int(np.sum(~finite))
    return result


def format_accuracy(result):
    """``"top-1 54.15%[, top-5 ...][, N non-finite outputs]"`` from an
    ``evaluate`` result."""
    text = f"top-1 {result['top1']:.2%}"
    if "top5" in result:
        text += f", top-5 {result['top5']:.2%}"
    if result.get("non_finite"):
        text += (f" ({result['non_finite']:,} examples with non-finite "
                 "logits, counted wrong)")
    return text


def save_atomic(model, path):
    """``model.save(path)`` through a temporary file, so a killed run never
    leaves a half-written model behind."""
    tmp = path.with_name(f"tmp-{os.getpid()}-{path.name}")
    model.save(tmp)
    os.replace(tmp, path)


def write_json(path, data):
    """Write JSON through a temporary file (never half-written)."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def library_versions():
    """Versions of Python and the libraries the run used (``None``: unused)."""

    def used(name):
        module = sys.modules.get(name)
        return getattr(module, "__version__", None)

    return {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "tensorflow": used("tensorflow"),
        "jax": used("jax"),
        "numpy": np.__version__,
        "keras_autorep": keras_autorep.__version__,
    }


def next_version(base):
    """The next integer version folder under ``base`` (1 when empty)."""
    versions = [int(p.name) for p in base.glob("*")
                if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def one_line(error):
    """An error message with its whitespace and newlines collapsed."""
    return " ".join(str(error).split())


# ------------------------------------------------------------------ recipe


class Recipe:
    """One recipe run: checked inputs, data, and the stages.

    ``Recipe(settings)`` does every check that needs no training (data,
    teacher file, budget against the model, run-folder settings) and raises
    ``UsageError`` on bad input; ``run()`` then executes the stages.
    """

    def __init__(self, settings):
        self.settings = settings
        self.out = Path(settings.out)
        self.times = {}
        keras.utils.set_random_seed(settings.seed)
        given_teacher = self._load_given_teacher()
        self._load_data()
        self.top5 = self.info.num_classes > 10
        # The given teacher, or the freshly initialised one to train.
        self.model = given_teacher or self._build_model()
        self._check_model(self.model)
        self.run_name = check_run_name(
            settings.run_name or default_run_name(settings, self.model.name))
        self.run_dir = self.out / "runs" / self.run_name
        self._check_run_folder()

    # -- checks and setup

    def _load_given_teacher(self):
        path = self.settings.teacher
        if path is None:
            return None
        if not Path(path).is_file():
            raise UsageError(f"--teacher {path}: no such file")
        try:
            return keras.saving.load_model(path, compile=False)
        except Exception as e:  # any unreadable or non-Keras file
            raise UsageError(
                f"--teacher {path}: cannot load a Keras model from it "
                f"({type(e).__name__}: {one_line(e)[:200]})") from None

    def _load_data(self):
        s = self.settings
        if s.data_dir is not None and not Path(s.data_dir).exists():
            raise UsageError(f"--data-dir {s.data_dir}: no such file or "
                             "folder")
        start = time.perf_counter()
        try:
            train, test, self.info = load_dataset(
                s.dataset, data_dir=s.data_dir, cache_dir=s.cache_dir,
                subset=s.subset, seed=s.seed)
        except (DataUnavailableError, OSError, ValueError) as e:
            raise UsageError(one_line(e)) from None
        self.train, self.test = train, test
        self.times["data"] = time.perf_counter() - start
        print(f"Data: {s.dataset}, {len(train[1]):,} train / "
              f"{len(test[1]):,} test images of {self.info.image_shape}, "
              f"{self.info.num_classes} classes", flush=True)

    def _build_model(self):
        s = self.settings
        return get_model(
            s.model,
            input_shape=self.info.image_shape,
            num_classes=self.info.num_classes,
            weight_decay=s.weight_decay / 2,
            preprocessing=normalization_layer(self.info),
        )

    def _check_model(self, model):
        expected = (None, *self.info.image_shape)
        if (tuple(model.input_shape) != expected
                or model.output_shape != (None, self.info.num_classes)):
            raise UsageError(
                f"--teacher {self.settings.teacher}: model maps "
                f"{model.input_shape} to {model.output_shape}; this data "
                f"needs {expected} -> (None, {self.info.num_classes})")
        try:
            self.total_relus = count_relus(replace_relus(model)).total
        except (TypeError, ValueError) as e:
            raise UsageError(f"cannot convert model {model.name!r}: "
                             f"{one_line(e)}") from None
        try:
            self.budget = parse_budget(self.settings.budget,
                                       total=self.total_relus)
        except ValueError as e:
            raise UsageError(f"--budget: {e}") from None

    def _check_run_folder(self):
        settings_file = self.run_dir / "settings.json"
        key = self.settings.training_key()
        if settings_file.is_file():
            old = json.loads(settings_file.read_text())
            changed = sorted(k for k in key.keys() | old.keys()
                             if key.get(k) != old.get(k))
            if changed:
                raise UsageError(
                    f"run folder {self.run_dir} was started with other "
                    f"settings ({', '.join(changed)} differ): rerun it with "
                    "the same flags or pass a new --run-name")
        else:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(settings_file, key)

    # -- stages

    def run(self):
        """Run every unfinished stage; returns the report."""
        result_file = self.run_dir / "result.json"
        if result_file.is_file():
            export_dir = Path(json.loads(result_file.read_text())["export"])
            if (export_dir / "report.json").is_file():
                print(f"Run {self.run_name!r} already finished; delete "
                      f"{self.run_dir} or pass another --run-name to run it "
                      "again.")
                return json.loads((export_dir / "report.json").read_text())
        report = self.run_stages()
        write_json(result_file, {"export": report["export"]["dir"]})
        return report

    def run_stages(self):
        """The stages, each resumed where it stopped; returns the report."""
        teacher, teacher_record = self.teacher_stage()
        student, search_record = self.search_stage(teacher)
        hardened, final = self.harden_stage(student)
        return self.export_stage(teacher, hardened, teacher_record,
                                 search_record, final)

    def _datasets(self):
        keras.utils.set_random_seed(self.settings.seed)
        return make_datasets(self.train, self.test, self.info,
                             self.settings.batch_size, seed=self.settings.seed)

    def _callbacks(self, stage, epochs):
        """Per-epoch log, TensorBoard and backup/restore of one training
        stage or phase, in ``<run dir>/<stage>``."""
        stage_dir = self.run_dir / stage
        backup_dir = stage_dir / "backup"
        callbacks = [
            EpochTimer(),
            keras.callbacks.CSVLogger(str(stage_dir / "log.csv"),
                                      append=True),
        ]
        tensorboard = tensorboard_callback(self.run_dir / "tensorboard" / stage)
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

    @staticmethod
    def _verbose():
        """Progress bars on a terminal, one line per epoch in a log file."""
        return 1 if sys.stdout.isatty() else 2

    def _fit(self, stage, model, epochs):
        """``model.fit`` with progress bars and the stage's callbacks;
        returns the stage's history."""
        callbacks = self._callbacks(stage, epochs)
        train_ds, test_ds = self._datasets()
        model.fit(train_ds, epochs=epochs, validation_data=test_ds,
                  callbacks=callbacks, shuffle=False,  # the pipeline shuffles
                  verbose=self._verbose())
        return read_log(self.run_dir / stage / "log.csv")

    def _save_trained(self, model, path, stages):
        """Save the model a training stage produced (atomically) and drop
        the backups of its phases ``stages``, which the model supersedes."""
        path.parent.mkdir(parents=True, exist_ok=True)
        save_atomic(model, path)
        for stage in stages:
            shutil.rmtree(self.run_dir / stage / "backup", ignore_errors=True)

    def _steps(self, epochs):
        return epochs * math.ceil(len(self.train[1]) / self.settings.batch_size)

    @staticmethod
    def _sgd(lr, steps):
        """SGD with momentum, learning rate cosine-decayed from ``lr`` to 0
        over ``steps``."""
        schedule = keras.optimizers.schedules.CosineDecay(lr, steps)
        return keras.optimizers.SGD(schedule, MOMENTUM)

    def _search_schedule(self, epochs):
        """Adam learning rate: cosine decay from ``--lr`` to ``FINAL_LR``
        over ``epochs``."""
        lr = self.settings.lr
        return keras.optimizers.schedules.CosineDecay(
            lr, self._steps(epochs), alpha=min(1.0, FINAL_LR / lr))

    def _compile_args(self):
        metrics = ["accuracy"]
        if self.top5:
            metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(
                5, name="top5_accuracy"))
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        return dict(loss=loss, metrics=metrics)

    def teacher_stage(self):
        """The all-ReLU teacher: given, cached, or trained now."""
        s = self.settings
        if s.teacher is not None:
            print(f"Teacher: {s.teacher}", flush=True)
            start = time.perf_counter()
            accuracy = evaluate(self.model, self._datasets()[1],
                                self.test[1], self.top5)
            record = dict(source="given", path=str(Path(s.teacher).resolve()),
                          test_accuracy=accuracy,
                          wall_seconds=time.perf_counter() - start)
            return self.model, record
        digest = hashlib.sha1(json.dumps(s.teacher_key(), sort_keys=True)
                              .encode()).hexdigest()[:12]
        path = self.out / "teachers" / f"{s.model}_{s.dataset}_{digest}.keras"
        record_file = path.with_suffix(".json")
        if path.is_file() and record_file.is_file():
            print(f"Teacher: reusing {path}", flush=True)
            record = json.loads(record_file.read_text())
            record["source"] = "cached"
        else:
            record = self._train_teacher(path)
            write_json(record_file, record)
            shutil.rmtree(self.run_dir / "teacher" / "backup",
                          ignore_errors=True)
        print(f"Teacher test accuracy: "
              f"{format_accuracy(record['test_accuracy'])}", flush=True)
        return keras.saving.load_model(path, compile=False), record

    def _train_teacher(self, path):
        s = self.settings
        print(f"Teacher: training {s.model} for {s.teacher_epochs} epochs "
              f"(SGD lr {s.teacher_lr:g}, momentum {MOMENTUM}, cosine "
              f"decay, weight decay {s.weight_decay:g})", flush=True)
        teacher = self.model
        teacher.compile(
            optimizer=self._sgd(s.teacher_lr, self._steps(s.teacher_epochs)),
            **self._compile_args())
        history = self._fit("teacher", teacher, s.teacher_epochs)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_atomic(teacher, path)
        return dict(
            source="trained", path=str(path.resolve()),
            settings=s.teacher_key(),
            test_accuracy=evaluate(teacher, self._datasets()[1],
                                   self.test[1], self.top5),
            epochs=s.teacher_epochs,
            wall_seconds=sum(history["epoch_seconds"]),
            history=history,
        )

    def search_stage(self, teacher):
        """Remove ReLUs down to the budget with ``--method``; returns the
        student (final masks) and the stage's record."""
        s = self.settings
        student_path = self.run_dir / "search" / "student.keras"
        allocation = self.allocation_stage(teacher)
        if student_path.is_file():
            print(f"Search: reusing {student_path}", flush=True)
            student = keras.saving.load_model(student_path, compile=False)
        else:
            print(f"Search ({s.method}, allocation {s.allocation}): budget "
                  f"{self.budget:,} of {self.total_relus:,} ReLUs, Adam lr "
                  f"{s.lr:g} cosine to {FINAL_LR:g}", flush=True)
            keras.utils.set_random_seed(s.seed)
            counts = allocation and allocation["counts"]
            train = {"autorep": self._train_autorep, "snl": self._train_snl,
                     "senet": self._train_senet}[s.method]
            student = train(teacher, counts)
            self._save_trained(student, student_path, PHASES[s.method])
        logs = [(phase, read_log(self.run_dir / phase / "log.csv"))
                for phase in PHASES[s.method]]
        history = merge_phase_logs(logs) if len(logs) > 1 else logs[0][1]
        record = dict(
            method=s.method, allocation=allocation or {"method": "free"},
            epochs=s.epochs,
            finetune_epochs=s.finetune_epochs if s.method != "autorep"
            else None,
            lr=s.lr, final_lr=FINAL_LR,
            budget_weight=s.budget_weight if s.method == "autorep" else None,
            batch_size=s.batch_size,
            relu_count_after_search=count_relus(student).kept,
            wall_seconds=sum(v for v in history.get("epoch_seconds", [])
                             if v is not None),
            history=history,
        )
        return student, record

    def allocation_stage(self, teacher):
        """``--allocation``: ``{"method", "counts": {site: ReLUs},
        "wall_seconds"}`` (kept in ``<run dir>/allocation.json``), or
        ``None`` for ``free``."""
        s = self.settings
        if s.allocation == "free":
            return None
        path = self.run_dir / "allocation.json"
        if path.is_file():
            return json.loads(path.read_text())
        from keras_autorep.allocation import allocate  # imports keras_tuner

        print(f"Allocation: {s.allocation} split of {self.budget:,} ReLUs "
              "across layers", flush=True)
        start = time.perf_counter()
        student = self._student(teacher)
        options = {}
        if s.allocation == "sensitivity":
            options = dict(train_data=self._datasets()[0],
                           sensitivity_steps=SENSITIVITY_STEPS)
        elif s.allocation == "tuned":
            fit, validation = split_validation(
                self.train, VALIDATION_FRACTION, s.seed)
            train_ds, val_ds = make_datasets(
                fit, validation, self.info, s.batch_size, seed=s.seed)
            options = dict(train_data=train_ds, val_data=val_ds,
                           run_dir=self.run_dir, max_trials=s.tuner_trials,
                           epochs=1, lr=s.lr, seed=s.seed,
                           verbose=self._verbose())
        counts = allocate(s.allocation, student, self.budget,
                          teacher=teacher, **options)
        allocation = dict(method=s.allocation,
                          counts={site: int(n) for site, n in counts.items()},
                          wall_seconds=time.perf_counter() - start)
        write_json(path, allocation)
        return allocation

    def _student(self, teacher):
        """The method's selector model of ``teacher``: DaPa polynomials
        for AutoReP, identity (linear) replacement for SNL and SENet."""
        if self.settings.method == "autorep":
            return replace_relus(teacher)
        return replace_relus(teacher, fit="identity", degree=1)

    def _train_autorep(self, teacher, counts):
        """AutoReP: ``BudgetTrainer`` on the selector model, its masks
        seeded at ``counts`` when an allocation is given."""
        s = self.settings
        student = self._student(teacher)
        if counts is not None:
            from keras_autorep.allocation import apply_allocation

            apply_allocation(student, counts, seed=s.seed)
        trainer = BudgetTrainer(student, self.budget, teacher=teacher,
                                budget_weight=s.budget_weight)
        trainer.compile(
            optimizer=keras.optimizers.Adam(self._search_schedule(s.epochs)),
            **self._compile_args())
        self._fit("search", trainer, s.epochs)
        return student

    def _method_options(self):
        """Arguments ``train_snl`` and ``train_senet`` share."""
        s = self.settings
        epochs = {"search": s.epochs, "identify": s.epochs,
                  "finetune": s.finetune_epochs}
        train_ds, test_ds = self._datasets()
        metrics = ["accuracy"]
        if self.top5:  # by name: each phase compiles its own metric
            metrics.append("sparse_top_k_categorical_accuracy")
        return dict(
            train_data=train_ds, val_data=test_ds,
            epochs=s.epochs, finetune_epochs=s.finetune_epochs,
            lr=self._search_schedule(max(s.epochs, s.finetune_epochs)),
            metrics=metrics, verbose=self._verbose(),
            callbacks=lambda phase: self._callbacks(phase, epochs[phase]),
        )

    def _train_snl(self, teacher, counts):
        """SNL: L1-penalised masks until the budget, binarised (per layer
        at ``counts`` when given), then fine-tuned."""
        return train_snl(teacher, self.budget, counts=counts,
                         **self._method_options())

    def _train_senet(self, teacher, counts):
        """SENet: per-layer ``counts``, mask identification, fine-tuning."""
        return train_senet(teacher, self.budget, counts=counts,
                           seed=self.settings.seed, **self._method_options())

    def harden_stage(self, student):
        """Hardened model within the budget and its test accuracy."""
        start = time.perf_counter()
        searched = count_relus(student).kept
        if searched > self.budget:
            print(f"Note: the search ended with {searched:,} kept ReLUs, above "
                  f"the budget; hardening keeps the {self.budget:,} with the "
                  "largest indicators and switches the rest to polynomials "
                  "they were not trained with, which costs accuracy. More "
                  "--epochs (or a larger --lambda) let the search reach the "
                  "budget.", flush=True)
        hardened = harden(student, self.budget)
        count = count_relus(hardened)
        if count.kept > self.budget:
            raise AssertionError(
                f"hardened model keeps {count.kept:,} ReLUs, above the "
                f"budget {self.budget:,}")
        accuracy = evaluate(hardened, self._datasets()[1], self.test[1],
                            self.top5)
        self.times["harden_evaluate"] = time.perf_counter() - start
        print(f"Hardened: {count.kept:,} ReLUs (budget {self.budget:,}), "
              f"test {format_accuracy(accuracy)}", flush=True)
        return hardened, dict(test_accuracy=accuracy, relus=count)

    def export_stage(self, teacher, hardened, teacher_record, search_record,
                     final):
        """Export (TensorFlow only), report.json and plots; returns the
        report."""
        start = time.perf_counter()
        export_dir = self._export(hardened)
        relus = final["relus"]
        plot_relus_per_layer(relus, export_dir / "relus_per_layer.png",
                             self.budget)
        plot_history(search_record["history"], export_dir / "training.png",
                     self.budget)
        self.times["export"] = time.perf_counter() - start
        s = self.settings
        wall = {"data": self.times["data"],
                "teacher": teacher_record["wall_seconds"],
                "allocation": search_record["allocation"].get(
                    "wall_seconds", 0.0),
                "search": search_record["wall_seconds"],
                "harden_evaluate": self.times["harden_evaluate"],
                "export": self.times["export"]}
        report = dict(
            run_name=self.run_name,
            dataset=s.dataset,
            model=self.model.name,
            quick=s.quick,
            budget=self.budget,
            budget_argument=s.budget,
            total_relus=self.total_relus,
            relu_count=relus.kept,
            relus=relus.to_dict(),
            final_test_accuracy=final["test_accuracy"],
            teacher=teacher_record,
            search=search_record,
            wall_seconds={**wall, "total": sum(wall.values())},
            pi_cost=cost_report(hardened, teacher).to_dict(),
        )
        return self._write_report(export_dir, report)

    def _export(self, model):
        """Export ``model`` to the next version folder of the run,
        ``<out>/<run name>/<version>/``, and return the folder: everything
        ``export_all`` writes on the TensorFlow backend, only ``model.keras``
        (with a notice) on another."""
        backend = keras.backend.backend()
        if backend == "tensorflow":
            from keras_autorep.export import export_all  # imports TensorFlow

            return Path(export_all(model, self.out, self.run_name))
        base = self.out / self.run_name
        export_dir = base / str(next_version(base))
        export_dir.mkdir(parents=True)
        model.save(export_dir / "model.keras")
        print(f"SavedModel and ONNX export skipped: they need the "
              f"TensorFlow backend, Keras runs on {backend}. Saved "
              f"{export_dir / 'model.keras'}; export it later with "
              "KERAS_BACKEND=tensorflow and "
              "keras_autorep.export.export_all.", flush=True)
        return export_dir

    def _write_report(self, export_dir, report):
        """``report`` with the fields every run reports (library versions,
        exported files, settings), written to ``report.json`` in
        ``export_dir``; returns it."""
        report = dict(
            report,
            versions=library_versions(),
            export=dict(dir=str(export_dir.resolve()),
                        files=sorted(p.name for p in export_dir.iterdir())
                        + ["report.json"]),
            settings=self.settings.training_key(),
        )
        write_json(export_dir / "report.json", report)
        return report


def print_summary(report):
    """The closing lines of a run: accuracy, ReLUs against budget, paths."""
    budget, kept, total = (report["budget"], report["relu_count"],
                           report["total_relus"])
    print()
    search = report["search"]
    print(f"== {report['run_name']}: {report['model']} on "
          f"{report['dataset']}, {search['method']} (allocation "
          f"{search['allocation']['method']}) ==")
    print(f"test accuracy   {format_accuracy(report['final_test_accuracy'])}"
          f" (teacher {format_accuracy(report['teacher']['test_accuracy'])})")
    print(f"ReLUs           {kept:,} kept, budget {budget:,}, model "
          f"{total:,} ({kept / max(1, total):.2%})")
    print(f"exported model  {report['export']['dir']}")
    print(f"report          {Path(report['export']['dir']) / 'report.json'}")


def main(argv=None, dataset="cifar10"):
    """Command-line entry point of the ``dataset`` recipe; returns 0.

    Bad input exits with status 2 and a one-line message before any
    training.
    """
    parser = build_parser(dataset)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_args(args, dataset)
        if settings.quick:
            n_train, n_test = settings.subset
            print(f"Quick preset (--quick): {settings.model}, at most "
                  f"{n_train:,} train / {n_test:,} test images, "
                  f"{settings.teacher_epochs} teacher + {settings.epochs} "
                  "search epochs: a CPU smoke run, far below the accuracy "
                  "of the paper schedule.", flush=True)
        recipe = Recipe(settings)
    except UsageError as e:
        parser.error(str(e))
    print_summary(recipe.run())
    return 0
