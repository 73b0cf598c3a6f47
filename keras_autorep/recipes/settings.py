"""Resolved recipe settings: what the user gave, filled from the presets and
checked, before any data is loaded.

``Settings.resolve(dataset, given)`` (AutoReP, SNL and SENet recipes) and
``CryptoNASSettings.resolve(given)`` take a mapping of the values the user
gave (``None`` = not given, as argparse leaves them) and raise
``UsageError`` with a one-line message on bad input: numbers out of range or
not finite (``nan``, ``inf``), a bad run name, a missing ``--data-dir`` or
``--teacher``, an ``--out`` or ``--cache-dir`` that is a file.
"""

# ``--teacher`` value naming Keras's own ImageNet weights of ``--model``.
IMAGENET_WEIGHTS = "imagenet"
# ``--teacher`` file suffixes read as weights of ``--model``.
WEIGHTS_SUFFIXES = (".h5", ".weights.h5")

import dataclasses
import math
import os
import re
from pathlib import Path

from keras_autorep.adapters.keras_tuner_roles import tuner_role
from keras_autorep.architectures import MODEL_ACTIVATIONS
from keras_autorep.architectures.efficientnet import NATIVE_SIZE
from keras_autorep.layers.activations import canonical_name
from keras_autorep.recipes.presets import (
    AUTOREP_FINETUNE_FRACTION,
    CRYPTONAS_DEFAULTS,
    CRYPTONAS_QUICK,
    DATASET_PRESETS,
    DEFAULT_ALLOCATION,
    DEFAULT_IMAGE_SIZE,
    DEFAULTS,
    QUICK_FINETUNE_EPOCHS,
    QUICK_PRESET,
    QUICK_STREAMED,
    QUICK_TUNER_TRIALS,
    RESERVED_NAMES,
    STREAMED_DATASETS,
    TUNER_TRIALS,
)
from keras_autorep.training.distribute import (
    MULTI_HOST_VARIABLE,
    check_device_count,
)


class UsageError(ValueError):
    """Bad input found before training; reported like an argparse error."""


def data_source(data_dir):
    """Identity of the data: the resolved path, or tensorflow-datasets."""
    return str(Path(data_dir).resolve()) if data_dir else "tensorflow-datasets"


def check_run_name(name):
    """``name`` if it can name a run folder and an export, else UsageError."""
    if (not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name)
            or name in RESERVED_NAMES):
        raise UsageError(
            f"--run-name {name!r}: use letters, digits, '.', '_' and '-', "
            f"not {' or '.join(RESERVED_NAMES)}")
    return name


def _fill(given, defaults, keys):
    """``given[key]`` where given, else ``defaults[key]``, for ``keys``."""
    return {key: defaults[key] if given.get(key) is None else given[key]
            for key in keys}


def _flag(key):
    return "--lambda" if key == "budget_weight" else "--" + key.replace(
        "_", "-")


def _check_at_least(values, keys, minimum):
    for key in keys:
        if values[key] < minimum:
            raise UsageError(f"{_flag(key)} must be >= {minimum}")


def _check_numbers(values, positive, non_negative):
    """Finite values, ``> 0`` for the keys ``positive``, ``>= 0`` for
    ``non_negative``; a seed NumPy accepts."""
    for key in positive + non_negative:
        value = values[key]
        low = "> 0" if key in positive else ">= 0"
        if not math.isfinite(value) or not (
                value > 0 if key in positive else value >= 0):
            raise UsageError(
                f"{_flag(key)} must be a finite number {low}, got {value}")
    if not 0 <= values["seed"] < 2**32:
        raise UsageError(
            f"--seed must be between 0 and {2**32 - 1}, got {values['seed']}")


def _check_paths(values):
    """The paths exist where they must and are folders where they must."""
    if values["data_dir"] and not Path(values["data_dir"]).exists():
        raise UsageError(
            f"--data-dir {values['data_dir']}: no such file or folder")
    teacher = values.get("teacher")
    if teacher == IMAGENET_WEIGHTS:
        if values["model"] not in NATIVE_SIZE:
            raise UsageError(
                f"--teacher {IMAGENET_WEIGHTS}: Keras has ImageNet weights "
                f"for --model {' or '.join(sorted(NATIVE_SIZE))} only")
    elif teacher and not Path(teacher).is_file():
        raise UsageError(f"--teacher {teacher}: no such file")
    for key in ("out", "cache_dir"):
        if values[key] and Path(values[key]).expanduser().is_file():
            raise UsageError(f"{_flag(key)} {values[key]} is a file, not a "
                             "folder")
    if values["run_name"] is not None:
        check_run_name(values["run_name"])


def _devices(given):
    """``--devices`` checked against the devices of this host (default: all
    the accelerators, else one CPU). The recipes run on one host: their
    pipelines (NumPy under JAX; tf.data batches of unknown size for the
    last, partial batch) are not what ``keras.distribution`` shards across
    processes."""
    if int(os.environ.get(MULTI_HOST_VARIABLE) or 1) > 1:
        raise UsageError(
            f"{MULTI_HOST_VARIABLE} is set: the recipes run on one host "
            "(--devices); several hosts train through the Python API "
            "(keras_autorep.training.distribute)")
    try:
        return check_device_count(given.get("devices"))
    except ValueError as e:
        raise UsageError(f"--devices: {e}") from None


def _image_size(given, defaults, model, streamed):
    """``--image-size`` of a streamed dataset (default: the quick preset's,
    else the model's native size), ``None`` for the others."""
    if not streamed:
        return None
    size = given.get("image_size") or defaults.get("image_size") or (
        NATIVE_SIZE.get(model, DEFAULT_IMAGE_SIZE))
    if size < 32:
        raise UsageError(f"--image-size must be >= 32, got {size}")
    return size


def _activations(given, model, method):
    """``--activations`` (default: the activation ``model`` is built with),
    checked against the registry and the method."""
    try:
        chosen = tuple(dict.fromkeys(canonical_name(name) for name in (
            given.get("activations") or (MODEL_ACTIVATIONS.get(
                model, "relu"),))))
    except ValueError as e:
        raise UsageError(f"--activations: {e}") from None
    if method != "autorep" and chosen != ("relu",):
        raise UsageError(
            f"--method {method} selects ReLUs only; --activations "
            f"{','.join(chosen)} needs --method autorep")
    return chosen


def _common_key(settings):
    """The settings that define a run's training (resume check); the device
    count does not (the batch size is the global one)."""
    key = dataclasses.asdict(settings)
    for name in ("out", "cache_dir", "run_name", "wait", "devices"):
        del key[name]
    key.pop("protocol", None)  # used after training only
    key["data_dir"] = data_source(settings.data_dir)
    key["subset"] = list(settings.subset) if settings.subset else None
    return key


@dataclasses.dataclass(frozen=True)
class Settings:
    """Settings of an AutoReP, SNL or SENet recipe run."""

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
    wait: bool
    allow_unstable: bool = False
    quadratic_decay: float = 0.0  # AutoReP's polynomial stability options
    max_quadratic: float = None
    protocol: str = None  # PI protocol priced and optimised for, or all
    devices: int = 1  # data-parallel devices
    image_size: int = None  # streamed datasets: side of the square images
    activations: tuple = ("relu",)  # the activations selected (AutoReP)

    @classmethod
    def resolve(cls, dataset, given):
        """Settings from the ``given`` values, the dataset's paper preset
        and, with ``quick``, the quick preset (explicit values win)."""
        quick = bool(given.get("quick"))
        method = given.get("method") or "autorep"
        streamed = dataset in STREAMED_DATASETS
        defaults = {**DATASET_PRESETS[dataset], **DEFAULTS, "subset": None}
        if quick:
            defaults.update(QUICK_PRESET)
            if streamed:
                defaults.update(QUICK_STREAMED)
        values = {key: given.get(key) for key in
                  ("budget", "data_dir", "cache_dir", "run_name", "teacher")}
        values.update(_fill(given, defaults, defaults))
        values.update(method=method, quick=quick,
                      out=given.get("out") or "saved_models",
                      seed=given.get("seed") or 0,
                      wait=bool(given.get("wait")),
                      allow_unstable=bool(given.get("allow_unstable")),
                      protocol=given.get("protocol"),
                      quadratic_decay=given.get("quadratic_decay") or 0.0,
                      max_quadratic=given.get("max_quadratic"),
                      devices=_devices(given))
        values["allocation"] = (given.get("allocation")
                                or DEFAULT_ALLOCATION[method])
        values["image_size"] = _image_size(given, defaults, values["model"],
                                           streamed)
        values["activations"] = _activations(given, values["model"], method)
        if tuner_role() == "worker" and values["allocation"] != "tuned":
            raise UsageError(
                "KERASTUNER_ORACLE_IP and KERASTUNER_TUNER_ID make this a "
                "keras-tuner worker: only --allocation tuned searches here")
        if method == "senet" and values["allocation"] == "free":
            raise UsageError("--method senet needs per-layer ReLU counts: "
                             "--allocation sensitivity, uniform or tuned")
        full_finetune = values["epochs"]
        if method == "autorep":
            full_finetune = max(1, round(AUTOREP_FINETUNE_FRACTION
                                         * values["epochs"]))
        values.update(_fill(given, {
            "finetune_epochs": (QUICK_FINETUNE_EPOCHS if quick
                                else full_finetune),
            "tuner_trials": QUICK_TUNER_TRIALS if quick else TUNER_TRIALS,
        }, ("finetune_epochs", "tuner_trials")))
        _check_at_least(values, ("epochs", "teacher_epochs", "batch_size",
                                 "tuner_trials"), 1)
        _check_at_least(values, ("finetune_epochs",), 0)
        _check_numbers(values, ("lr", "teacher_lr") + (
            ("max_quadratic",) if values["max_quadratic"] is not None
            else ()), ("weight_decay", "budget_weight", "quadratic_decay"))
        _check_paths(values)
        return cls(dataset=dataset, **values)

    def training_key(self):
        """The settings that define the run's training (resume check)."""
        key = _common_key(self)
        del key["allow_unstable"]
        key["teacher"] = (str(Path(self.teacher).resolve())
                          if self.teacher not in (None, IMAGENET_WEIGHTS)
                          else self.teacher)
        key["activations"] = list(self.activations)
        return key

    def teacher_key(self):
        """The settings that define a trained teacher (cache key)."""
        full = self.training_key()
        return {name: full[name] for name in
                ("dataset", "data_dir", "subset", "seed", "model",
                 "image_size", "teacher_epochs", "batch_size", "teacher_lr",
                 "weight_decay")}

    def default_run_name(self, model_name):
        """``<dataset>_<model>_<budget>[_<method>][_<allocation>][_quick]``,
        e.g. cifar10_resnet18_12.9k or cifar10_resnet18_12.9k_snl_uniform;
        the method and allocation appear when they are not the defaults."""
        budget = self.budget.replace("%", "pct")
        name = f"{self.dataset}_{model_name}_{budget}"
        if self.method != "autorep":
            name += f"_{self.method}"
        if self.allocation != DEFAULT_ALLOCATION[self.method]:
            name += f"_{self.allocation}"
        return name + "_quick" if self.quick else name


@dataclasses.dataclass(frozen=True)
class CryptoNASSettings:
    """Settings of a CryptoNAS recipe run."""

    dataset: str
    budget: int
    depths: tuple
    stem_stride: int
    trials: int
    search_epochs: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    data_dir: str
    cache_dir: str
    subset: tuple
    out: str
    run_name: str
    seed: int
    quick: bool
    wait: bool
    devices: int = 1  # data-parallel devices
    image_size = None  # not a field: CryptoNAS reads in-memory datasets

    @classmethod
    def resolve(cls, given):
        """Settings from the ``given`` values and the CryptoNAS presets
        (the quick one with ``quick``; explicit values win)."""
        quick = bool(given.get("quick"))
        defaults = dict(CRYPTONAS_DEFAULTS)
        if quick:
            defaults.update(CRYPTONAS_QUICK)
        values = {key: given.get(key) for key in
                  ("budget", "data_dir", "cache_dir", "run_name")}
        values.update(_fill(given, defaults, defaults))
        values.update(dataset=given.get("dataset") or "cifar10", quick=quick,
                      out=given.get("out") or "saved_models",
                      seed=given.get("seed") or 0,
                      wait=bool(given.get("wait")), devices=_devices(given))
        _check_at_least(values, ("trials", "search_epochs", "epochs",
                                 "batch_size"), 1)
        _check_numbers(values, ("lr",), ("weight_decay",))
        _check_paths(values)
        return cls(**values)

    def training_key(self):
        """The settings that define the run (resume check)."""
        key = _common_key(self)
        key["depths"] = list(self.depths)
        return key

    def default_run_name(self):
        """``<dataset>_cryptonas_<budget>[_quick]``."""
        name = f"{self.dataset}_cryptonas_{self.budget}"
        return name + "_quick" if self.quick else name
