"""Resolved recipe settings: what the user gave, filled from the presets and
checked, before any data is loaded.

``Settings.resolve(dataset, given)`` takes a mapping of the values the user
gave (``None`` = not given, as argparse leaves them; ``given["dataset"]``
where the command line names it) and raises ``UsageError`` with a one-line
message on bad input: numbers out of range or not finite (``nan``,
``inf``), a budget the method cannot take, a flag of another method, a bad
run name, a missing ``--data-dir`` or ``--teacher``, an ``--out`` or
``--cache-dir`` that is a file. Flags a method does not use are ``None``.
"""

import dataclasses
import math
import os
import re
from pathlib import Path

from keras_autorep.adapters.keras_tuner_roles import tuner_role
from keras_autorep.architectures import MODEL_ACTIVATIONS
from keras_autorep.architectures.efficientnet import NATIVE_SIZE
from keras_autorep.budgets import parse_budget, parse_cost
from keras_autorep.costs import Network, protocols
from keras_autorep.layers.activations import canonical_name
from keras_autorep.methods import METHODS
from keras_autorep.recipes.presets import (
    DATASET_PRESETS,
    DEFAULT_IMAGE_SIZE,
    DEFAULTS,
    METHOD_PRESETS,
    METHOD_QUICK,
    QUICK_PRESET,
    QUICK_STREAMED,
    RESERVED_NAMES,
    STREAMED_DATASETS,
)
from keras_autorep.training.distribute import (
    MULTI_HOST_VARIABLE,
    check_device_count,
)

# ``--teacher`` value naming Keras's own ImageNet weights of ``--model``.
IMAGENET_WEIGHTS = "imagenet"
# ``--teacher`` file suffixes read as weights of ``--model``.
WEIGHTS_SUFFIXES = (".h5", ".weights.h5")
# The settings of teacher-based methods and of CryptoNAS only.
TEACHER_FIELDS = ("model", "teacher", "teacher_epochs", "teacher_lr",
                  "budget_weight", "allocation", "finetune_epochs",
                  "tuner_trials", "quadratic_decay", "max_quadratic",
                  "activations", "image_size", "replacement")
SEARCH_FIELDS = ("trials", "search_epochs", "depths", "stem_stride")
# Settings that do not change what a run trains (resume check).
NOT_TRAINING = ("out", "cache_dir", "run_name", "wait", "devices",
                "allow_unstable", "checkpoint_every", "strict_images")


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


def flag(key):
    """The command-line flag of a settings field."""
    return "--lambda" if key == "budget_weight" else "--" + key.replace(
        "_", "-")


def _check_at_least(values, keys, minimum):
    for key in keys:
        if values[key] is not None and values[key] < minimum:
            raise UsageError(f"{flag(key)} must be >= {minimum}")


def _check_numbers(values, positive, non_negative):
    """Finite values, ``> 0`` for the keys ``positive``, ``>= 0`` for
    ``non_negative`` (unset ones skipped); a seed NumPy accepts."""
    for key in positive + non_negative:
        value = values[key]
        if value is None:
            continue
        low = "> 0" if key in positive else ">= 0"
        if not math.isfinite(value) or not (
                value > 0 if key in positive else value >= 0):
            raise UsageError(
                f"{flag(key)} must be a finite number {low}, got {value}")
    if not 0 <= values["seed"] < 2**32:
        raise UsageError(
            f"--seed must be between 0 and {2**32 - 1}, got {values['seed']}")


def _check_paths(values):
    """The paths exist where they must and are folders where they must."""
    if values["data_dir"] and not Path(values["data_dir"]).exists():
        raise UsageError(
            f"--data-dir {values['data_dir']}: no such file or folder")
    teacher = values["teacher"]
    if teacher == IMAGENET_WEIGHTS:
        if values["model"] not in NATIVE_SIZE:
            raise UsageError(
                f"--teacher {IMAGENET_WEIGHTS}: Keras has ImageNet weights "
                f"for --model {' or '.join(sorted(NATIVE_SIZE))} only")
    elif teacher and not Path(teacher).is_file():
        raise UsageError(f"--teacher {teacher}: no such file")
    for key in ("out", "cache_dir"):
        if values[key] and Path(values[key]).expanduser().is_file():
            raise UsageError(f"{flag(key)} {values[key]} is a file, not a "
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


def _budget(text, method, given):
    """The ``--budget`` text: a cost (``parse_cost``) needs ``--protocol``
    and AutoReP; a method without a model to start from takes counts
    only."""
    try:
        cost = parse_cost(text)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if cost is not None:
        if not given.get("protocol"):
            raise UsageError(
                f"--budget {text} is a cost: name the protocol that prices "
                f"it (--protocol {'|'.join(protocols())})")
        if method.name != "autorep":
            raise UsageError(
                f"--budget {text} is a cost, which --method autorep trains "
                f"for; --method {method.name} takes a ReLU count")
        return text
    if given.get("replacement") == "auto":
        raise UsageError(
            "--replacement auto learns each site's form under a cost: give "
            "--budget in bytes (3.7MB) or milliseconds (250ms)")
    if not method.uses_teacher:
        try:
            if text.strip().endswith(("%", "x")):
                raise ValueError
            parse_budget(text)
        except ValueError:
            raise UsageError(
                f"invalid ReLU budget {text!r}: expected a count like "
                f"86000, 86k or 1.2M (--method {method.name} sizes the "
                "network from it; there is no model to take a percentage or "
                "a reduction factor of)") from None
    return text


def _network(text):
    """``--network`` (default ``lan``), checked."""
    try:
        Network.parse(text or "lan")
    except ValueError as e:
        raise UsageError(f"--network: {e}") from None
    return text or "lan"


def _activations(given, model, method):
    """``--activations`` (default: the activation ``model`` is built with),
    checked against the registry and the method."""
    try:
        chosen = tuple(dict.fromkeys(canonical_name(name) for name in (
            given.get("activations") or (MODEL_ACTIVATIONS.get(
                model, "relu"),))))
    except ValueError as e:
        raise UsageError(f"--activations: {e}") from None
    return chosen


def _defaults(dataset, method, quick):
    """The presets in order: the dataset's paper schedule, the common
    defaults, the quick preset, the method's own (paper, then quick)."""
    defaults = {**DATASET_PRESETS[dataset], **DEFAULTS, "subset": None}
    if quick:
        defaults.update(QUICK_PRESET)
        if dataset in STREAMED_DATASETS:
            defaults.update(QUICK_STREAMED)
    defaults.update(METHOD_PRESETS.get(method.name, {}))
    if quick:
        defaults.update(METHOD_QUICK.get(method.name, {}))
    return defaults


def _method_values(given, method, defaults, streamed, epochs):
    """The values of the method's own fields, checked; the other family's
    fields are ``None`` (and an error where the user gave one)."""
    own, other = ((TEACHER_FIELDS, SEARCH_FIELDS) if method.uses_teacher
                  else (SEARCH_FIELDS, TEACHER_FIELDS))
    for key in other:
        if given.get(key) is not None:
            raise UsageError(f"{flag(key)} does not apply to --method "
                             f"{method.name}")
    values = {key: None for key in other}
    values.update({key: given[key] if given.get(key) is not None
                   else defaults.get(key) for key in own})
    if not method.uses_teacher:
        return values
    if not streamed:
        values["image_size"] = None
    elif values["image_size"] is None:
        values["image_size"] = NATIVE_SIZE.get(values["model"],
                                               DEFAULT_IMAGE_SIZE)
    if values["image_size"] is not None and values["image_size"] < 32:
        raise UsageError(
            f"--image-size must be >= 32, got {values['image_size']}")
    values["activations"] = _activations(given, values["model"], method)
    values["allocation"] = (given.get("allocation")
                            or method.default_allocation)
    if values["finetune_epochs"] is None:
        values["finetune_epochs"] = method.default_finetune_epochs(
            epochs)
    values["quadratic_decay"] = values["quadratic_decay"] or 0.0
    values["replacement"] = values["replacement"] or method.replacement
    if parse_cost(given["budget"]) and values["allocation"] != "free":
        raise UsageError(
            f"--allocation {values['allocation']} splits a ReLU count; a "
            "cost budget trains with --allocation free")
    try:
        method.check(values["allocation"], values["activations"])
    except ValueError as e:
        raise UsageError(str(e)) from None
    if tuner_role() == "worker" and values["allocation"] != "tuned":
        raise UsageError(
            "KERASTUNER_ORACLE_IP and KERASTUNER_TUNER_ID make this a "
            "keras-tuner worker: only --allocation tuned searches here")
    return values


@dataclasses.dataclass(frozen=True)
class Settings:
    """Settings of a recipe run (every method; see ``TEACHER_FIELDS`` and
    ``SEARCH_FIELDS`` for the fields of one family)."""

    dataset: str
    method: str
    budget: str
    quick: bool
    data_dir: str
    cache_dir: str
    subset: tuple
    out: str
    run_name: str
    seed: int
    wait: bool
    devices: int
    batch_size: int
    lr: float
    weight_decay: float
    epochs: int
    protocol: str = None  # PI protocol priced and budgeted for, or all
    network: str = None  # the network of latencies (lan, wan, RTT,MBPS)
    allow_unstable: bool = False
    checkpoint_every: int = 0  # steps between checkpoints within an epoch
    strict_images: bool = False  # stop at image files that do not decode
    # Teacher-based methods (AutoReP, SNL, SENet).
    model: str = None
    teacher: str = None
    teacher_epochs: int = None
    teacher_lr: float = None
    budget_weight: float = None
    allocation: str = None
    finetune_epochs: int = None
    tuner_trials: int = None
    quadratic_decay: float = None
    max_quadratic: float = None
    activations: tuple = None
    image_size: int = None  # streamed datasets: side of the square images
    replacement: str = None  # what removed positions compute
    # CryptoNAS.
    trials: int = None
    search_epochs: int = None
    depths: tuple = None
    stem_stride: int = None

    @classmethod
    def resolve(cls, dataset, given):
        """Settings from the ``given`` values, the presets and, with
        ``quick``, the quick presets (explicit values win)."""
        dataset = given.get("dataset") or dataset
        quick = bool(given.get("quick"))
        method = METHODS[given.get("method") or "autorep"]
        if not method.uses_teacher and dataset in STREAMED_DATASETS:
            raise UsageError(f"--method {method.name} reads in-memory "
                             f"datasets, not {dataset}")
        defaults = _defaults(dataset, method, quick)
        values = {key: given.get(key) for key in
                  ("data_dir", "cache_dir", "run_name", "protocol")}
        values.update(
            {key: defaults[key] if given.get(key) is None else given[key]
             for key in ("subset", "batch_size", "lr", "weight_decay",
                         "epochs", "checkpoint_every")},
            method=method.name, quick=quick,
            strict_images=bool(given.get("strict_images")),
            budget=_budget(given["budget"], method, given),
            network=_network(given.get("network")),
            out=given.get("out") or "saved_models",
            seed=given.get("seed") or 0, wait=bool(given.get("wait")),
            allow_unstable=bool(given.get("allow_unstable")),
            devices=_devices(given))
        values.update(_method_values(given, method, defaults,
                                     dataset in STREAMED_DATASETS,
                                     values["epochs"]))
        _check_at_least(values, ("epochs", "teacher_epochs", "batch_size",
                                 "tuner_trials", "trials", "search_epochs"),
                        1)
        _check_at_least(values, ("finetune_epochs", "checkpoint_every"), 0)
        _check_numbers(values, ("lr", "teacher_lr", "max_quadratic"),
                       ("weight_decay", "budget_weight", "quadratic_decay"))
        _check_paths(values)
        return cls(dataset=dataset, **values)

    @property
    def uses_teacher(self):
        """Whether the method starts from an all-ReLU teacher."""
        return METHODS[self.method].uses_teacher

    @property
    def is_cost(self):
        """Whether ``budget`` is a cost (bytes or milliseconds)."""
        return parse_cost(self.budget) is not None

    @property
    def network_parameters(self):
        """The ``Network`` of ``--network``."""
        return Network.parse(self.network)

    def training_key(self):
        """The settings that define the run's training (resume check)."""
        key = dataclasses.asdict(self)
        for name in NOT_TRAINING:
            del key[name]
        key["data_dir"] = data_source(self.data_dir)
        for name in ("subset", "depths", "activations"):
            key[name] = list(key[name]) if key[name] else key[name]
        if self.teacher not in (None, IMAGENET_WEIGHTS):
            key["teacher"] = str(Path(self.teacher).resolve())
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
        e.g. cifar10_resnet18_12.9k, cifar10_resnet18_12.9k_snl_uniform
        or cifar10_cryptonas_86k; the method and allocation appear when
        they are not the defaults."""
        budget = self.budget.replace("%", "pct")
        method = METHODS[self.method]
        if not method.uses_teacher:
            name = f"{self.dataset}_{self.method}_{budget}"
        else:
            name = f"{self.dataset}_{model_name}_{budget}"
            if self.method != "autorep":
                name += f"_{self.method}"
            if self.allocation != method.default_allocation:
                name += f"_{self.allocation}"
        return name + "_quick" if self.quick else name
