"""AutoReP on CIFAR-10, ResNet-18 at 12.9k ReLUs, under JAX: the paper
schedule, or as much of it as ``--minutes`` allows. Needs no TensorFlow.

The stages of the CIFAR-10 recipe (``keras_autorep.recipes.presets``, after
AutoReP's released scripts), through the public API and the method
registry (``METHODS["autorep"]`` with a ``Plan``), with the recipe's
augmented ``make_datasets`` pipeline (random crop and flip) at batch 128:

1. **teacher**: the all-ReLU ResNet-18, SGD lr 0.1, momentum 0.9, cosine
   decay to 0, weight decay 5e-4, 400 epochs;
2. **search**: AutoReP's selectors, Adam lr 1e-3 cosine-decayed to 1e-5,
   lambda 100, CE + KD, 200 epochs;
3. **finetune**: the masks landed on the budget and frozen, a tenth of the
   search's epochs at a quarter of its learning rate;
4. **hardened**: ``harden`` within the budget, then the test accuracy.

With ``--minutes M`` the teacher's first epoch is timed (compilation
included), and the paper's epochs of every stage are scaled by one factor
(at most 1, at least one epoch per stage) so that the run fits ``M``
minutes; the search and fine-tuning are scaled again from the teacher's
measured epoch time once it is trained. A search epoch is taken to cost
``COSTS["search"]`` teacher epochs (the student with its selectors and the
teacher's forward pass for distillation), a fine-tuning epoch
``COSTS["finetune"]``; the report gives the measured ones. The teacher's
first epoch runs at the peak learning rate, its cosine spans the rest.

After each stage it prints the epochs run, the epoch time (the first one,
with compilation, apart), images/s, ``relu_count`` and top-1 on the test
split, and writes ``report.json`` (and ``hardened.keras``) to ``--out``.

    KERAS_BACKEND=jax python benchmarks/gpu.py \\
        --data-dir ../shared/data/cifar10-images.tar.gz --minutes 60
    python benchmarks/gpu.py --data-dir ... --cpu-smoke   # a few CPU steps

``--cpu-smoke``: 128 training and 64 test images, batch 32, no time
budget beyond one epoch per stage (``make test`` runs it on the CPU with
TensorFlow hidden).
"""

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_autorep import count_relus, harden, parse_budget  # noqa: E402
from keras_autorep.architectures import get_model  # noqa: E402
from keras_autorep.data import (  # noqa: E402
    load_dataset,
    make_datasets,
    normalization_layer,
)
from keras_autorep.methods import METHODS, Plan  # noqa: E402
from keras_autorep.recipes.presets import (  # noqa: E402
    DATASET_PRESETS,
    DEFAULTS,
)
from keras_autorep.training.schedules import cosine_sgd  # noqa: E402

PRESET = DATASET_PRESETS["cifar10"]
AUTOREP = METHODS["autorep"]
PAPER = {"teacher": PRESET["teacher_epochs"], "search": PRESET["epochs"],
         "finetune": AUTOREP.default_finetune_epochs(PRESET["epochs"])}
# Epoch time of each stage in teacher epochs (assumed; the report has the
# measured ones).
COSTS = {"teacher": 1.0, "search": 2.0, "finetune": 1.6}
# First-epoch times held back for the compilations still to come.
COMPILATIONS_LEFT = {"teacher": 3, "search": 2}
SMOKE = dict(subset=(128, 64), batch_size=32)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="benchmarks/gpu.py", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--data-dir", required=True,
        help="the CIFAR-10 archive or folder, e.g. "
             "../shared/data/cifar10-images.tar.gz")
    add("--minutes", type=float, default=None,
        help="wall-clock budget of the run (default: the whole paper "
             "schedule)")
    add("--budget", default="12.9k", help="ReLU budget (default 12.9k)")
    add("--cpu-smoke", action="store_true",
        help="128/64 images, batch 32, one epoch per stage")
    add("--workers", type=int, default=4,
        help="threads preparing batches (default 4)")
    add("--cache-dir", default=None, help="decoded-image cache folder")
    add("--out", default="runs/gpu", help="report folder (default runs/gpu)")
    add("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if keras.backend.backend() != "jax":
        parser.error(f"runs under KERAS_BACKEND=jax, not "
                     f"{keras.backend.backend()}")
    if args.minutes is not None and not args.minutes > 0:
        parser.error(f"--minutes must be > 0, got {args.minutes}")
    if not Path(args.data_dir).exists():
        parser.error(f"--data-dir {args.data_dir}: no such file or folder")
    return args


def scaled_epochs(stages, seconds, epoch_seconds):
    """``({stage: epochs}, factor)``: the paper's epochs of ``stages``
    scaled by one factor (at most 1; ``seconds=None``: 1) so that they take
    about ``seconds`` at ``epoch_seconds`` per teacher epoch; at least one
    epoch per stage."""
    factor = 1.0
    if seconds is not None:
        units = sum(PAPER[stage] * COSTS[stage] for stage in stages)
        factor = min(1.0, max(0.0, seconds) / (epoch_seconds * units))
    return {stage: max(1, math.floor(PAPER[stage] * factor))
            for stage in stages}, factor


class StageClock(keras.callbacks.Callback):
    """Wall time of every epoch of a stage's ``fit`` calls; with
    ``benchmark``, records the stage when a ``fit`` ends (of the trainer's
    student, if the model is a trainer)."""

    def __init__(self, stage, benchmark=None):
        super().__init__()
        self.stage, self.benchmark = stage, benchmark
        self.start, self.seconds = time.perf_counter(), []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.epoch_start)

    def on_train_end(self, logs=None):
        if self.benchmark is not None:
            self.benchmark.record(
                self.stage, getattr(self.model, "student", self.model),
                self.seconds, self.start)


class Benchmark:
    """The data, the schedule decisions and one record per stage."""

    def __init__(self, args):
        self.args = args
        self.start = time.perf_counter()
        self.smoke = args.cpu_smoke
        # the smoke run has no time for more than one epoch per stage
        self.minutes = 0.0 if self.smoke else args.minutes
        self.batch_size = (SMOKE["batch_size"] if self.smoke
                           else DEFAULTS["batch_size"])
        (x, y), self.test, self.info = load_dataset(
            "cifar10", data_dir=args.data_dir, cache_dir=args.cache_dir,
            subset=SMOKE["subset"] if self.smoke else None, seed=args.seed,
            verbose=0)
        self.images = len(y)
        self.train_ds, self.test_ds = make_datasets(
            (x, y), self.test, self.info, self.batch_size, seed=args.seed,
            workers=args.workers)
        self.steps_per_epoch = math.ceil(self.images / self.batch_size)
        self.stages, self.decisions = {}, []

    def seconds_left(self):
        if self.minutes is None:
            return None
        return self.minutes * 60 - (time.perf_counter() - self.start)

    def decide(self, stages, epoch_seconds, compilations):
        """Epochs of ``stages`` from the time left."""
        left = self.seconds_left()
        if left is not None:
            left -= compilations * self.first_epoch
        epochs, factor = scaled_epochs(stages, left, epoch_seconds)
        self.decisions.append(dict(stages=list(stages), factor=factor,
                                   epochs=epochs, seconds_available=left))
        print(f"Schedule: {factor:.2%} of the paper's epochs: "
              + ", ".join(f"{s} {epochs[s]} of {PAPER[s]}" for s in stages),
              flush=True)
        return epochs

    def top1(self, model):
        logits = model.predict(self.test_ds, verbose=0)
        return float(np.mean(np.argmax(logits, -1) == self.test[1]))

    def record(self, stage, model, seconds, start):
        """Print and keep a stage's epoch time, images/s, count, top-1."""
        steady = seconds[1:] or seconds[:1]
        epoch_seconds = float(np.mean(steady)) if steady else None
        record = dict(
            epochs=len(seconds), paper_epochs=PAPER.get(stage),
            first_epoch_seconds=seconds[0] if seconds else None,
            epoch_seconds=epoch_seconds,
            images_per_second=(self.images / epoch_seconds
                               if epoch_seconds else None),
            relu_count=count_relus(model).kept, top1=self.top1(model),
            wall_seconds=time.perf_counter() - start)
        self.stages[stage] = record
        timing = ""
        if seconds:
            timing = (f"{len(seconds)} epoch(s), first {seconds[0]:.1f} s "
                      "(compilation included)")
            if seconds[1:]:
                timing += f", then {epoch_seconds:.1f} s/epoch"
            timing += f", {record['images_per_second']:,.0f} images/s, "
        print(f"[{stage}] {timing}relu_count {record['relu_count']:,}, "
              f"top-1 {record['top1']:.2%}", flush=True)

    def teacher(self):
        """The all-ReLU teacher: a timed first epoch, then the rest."""
        keras.utils.set_random_seed(self.args.seed)
        model = get_model(
            PRESET["model"], input_shape=self.info.image_shape,
            num_classes=self.info.num_classes,
            weight_decay=DEFAULTS["weight_decay"] / 2,
            preprocessing=normalization_layer(self.info))
        clock = StageClock("teacher")
        self.fit_teacher(model, 1, 1, clock)
        self.first_epoch = clock.seconds[0]
        epochs = self.decide(tuple(PAPER), self.first_epoch,
                             COMPILATIONS_LEFT["teacher"])["teacher"]
        self.fit_teacher(model, epochs - 1, epochs - 1, clock)
        self.record("teacher", model, clock.seconds, clock.start)
        return model

    def fit_teacher(self, model, epochs, schedule_epochs, clock):
        """``epochs`` epochs of SGD, cosine over ``schedule_epochs``."""
        if epochs < 1:
            return
        model.compile(
            optimizer=cosine_sgd(DEFAULTS["teacher_lr"],
                                 schedule_epochs * self.steps_per_epoch),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(self.train_ds, epochs=epochs, callbacks=[clock], verbose=2)

    def autorep(self, teacher):
        """Search, landing and fine-tuning, then the hardened model."""
        epochs = self.decide(("search", "finetune"),
                             self.stages["teacher"]["epoch_seconds"],
                             COMPILATIONS_LEFT["search"])
        budget = parse_budget(self.args.budget,
                              total=count_relus(teacher).total)
        plan = Plan(epochs=epochs["search"],
                    finetune_epochs=epochs["finetune"], lr=DEFAULTS["lr"],
                    steps_per_epoch=self.steps_per_epoch,
                    budget_weight=PRESET["budget_weight"],
                    seed=self.args.seed)
        keras.utils.set_random_seed(self.args.seed)
        student = AUTOREP.train(
            teacher, budget, self.train_ds, plan=plan, verbose=2,
            callbacks=lambda phase: [StageClock(phase, self)])
        start = time.perf_counter()
        hardened = harden(student, budget)
        self.record("hardened", hardened, [], start)
        return hardened, budget, plan

    def report(self, budget, plan):
        return dict(
            benchmark="benchmarks/gpu.py", cpu_smoke=self.smoke,
            minutes=self.minutes, model=PRESET["model"],
            budget=budget, batch_size=self.batch_size,
            train_images=self.images, test_images=len(self.test[1]),
            paper_epochs=PAPER, assumed_costs=COSTS,
            measured_costs={stage: self.stages[stage]["epoch_seconds"]
                            / self.stages["teacher"]["epoch_seconds"]
                            for stage in ("search", "finetune")},
            schedule_decisions=self.decisions, plan=AUTOREP.record(plan),
            stages=self.stages,
            wall_seconds=time.perf_counter() - self.start,
            devices=[str(device) for device in jax.devices()],
            versions=dict(python=platform.python_version(),
                          keras=keras.__version__, jax=jax.__version__))


def main(argv=None):
    args = parse_args(argv)
    print(f"Devices: {', '.join(map(str, jax.devices()))}", flush=True)
    benchmark = Benchmark(args)
    teacher = benchmark.teacher()
    hardened, budget, plan = benchmark.autorep(teacher)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hardened.save(out / "hardened.keras")
    report = benchmark.report(budget, plan)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"Report: {out / 'report.json'} "
          f"({report['wall_seconds'] / 60:.1f} min)", flush=True)
    return report


if __name__ == "__main__":
    main()
