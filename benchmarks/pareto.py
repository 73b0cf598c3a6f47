"""Accuracy against ReLU count on real CIFAR-10: AutoReP, SNL, SENet, CryptoNAS.

One all-ReLU ``resnet_small`` teacher (73,728 ReLUs at 32x32) is trained
and shared; then at every budget (default 50%, 10% and 2.6% of the
teacher's ReLUs):

* **AutoReP**: ``replace_relus(teacher)`` trained with ``BudgetTrainer``
  (CE + KD + budget loss, lambda as the CIFAR recipe), Adam with cosine
  decay to 1e-5, then ``harden(student, budget)``;
* **SNL**: ``keras_autorep.methods.train_snl`` (mask search, binarise,
  fine-tune), Adam;
* **SENet**: ``keras_autorep.methods.train_senet`` (sensitivity allocation,
  mask identification, fine-tune), Adam;
* **CryptoNAS**: ``balanced_network(budget, depth)`` trained from scratch
  like the teacher (SGD, cosine decay). Its stem stride is the smallest of
  1, 2, 4 that gives a first-stage width of at least 8 channels (at 2.6%
  the budget is below the smallest full-resolution balanced network).

Every teacher-based method gets ``--epochs`` epochs (SNL and SENet split
them between their two phases: ``max(1, E // 2)`` search / identification,
the rest fine-tuning). CryptoNAS has no teacher to start from and trains
``--teacher-epochs + --epochs`` epochs, the same number of epochs behind
every final model. Accuracy is top-1 on the test split; wall time is each
method's own training (+ hardening), the shared teacher apart.

Writes ``pareto.csv``, ``pareto.md`` and ``pareto.png`` to ``--out``.

    python benchmarks/pareto.py --data-dir ../shared/data/cifar10-images.tar.gz --quick
    python benchmarks/pareto.py --data-dir ../shared/data/cifar10-images.tar.gz

Default ("full") setting, about 30 minutes on 2 CPU cores: 10,000
class-balanced training images and the whole 10,000-image test split,
teacher 10 epochs, 6 epochs per method (CryptoNAS 16), batch 64, Adam lr
4e-3 (the AutoReP quick recipe's). ``--quick``: 5,000 / 1,000 images,
teacher 3 epochs, 2 per method, same batch and learning rate. Explicit
flags (``--subset``, ``--teacher-epochs``, ``--epochs``, ``--batch-size``,
``--lr``) override either preset, e.g. for a paper-length run on a GPU.
"""

import argparse
import csv
import math
import time
from pathlib import Path

import keras
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from keras_autorep import count_relus, harden, parse_budget
from keras_autorep.budgets import check_budget_text
from keras_autorep.architectures import (
    balanced_network,
    balanced_width,
    get_model,
)
from keras_autorep.data import load_dataset, make_datasets, normalization_layer
from keras_autorep.methods import train_autorep, train_senet, train_snl
from keras_autorep.recipes.cli import subset_argument
from keras_autorep.recipes.presets import DATASET_PRESETS, QUICK_PRESET
from keras_autorep.recipes.reporting import evaluate
from keras_autorep.training.schedules import cosine_adam_schedule, cosine_sgd

METHODS = ("autorep", "snl", "senet", "cryptonas")
FULL = dict(subset=(10_000, 10_000), teacher_epochs=10, epochs=6,
            batch_size=64, lr=QUICK_PRESET["lr"])
QUICK = dict(subset=(5_000, 1_000), teacher_epochs=3, epochs=2,
             batch_size=64, lr=QUICK_PRESET["lr"])
CRYPTONAS_MIN_WIDTH = 8
SENSITIVITY_IMAGES = 1_000


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="benchmarks/pareto.py", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--data-dir", required=True,
        help="CIFAR-10 folder or archive, e.g. "
             "../shared/data/cifar10-images.tar.gz")
    add("--quick", action="store_true",
        help="5k/1k images, teacher 3 epochs, 2 epochs per method")
    add("--budgets", default="50%,10%,2.6%",
        help="comma-separated budgets, counts or percentages of the "
             "teacher's ReLUs (default 50%%,10%%,2.6%%)")
    add("--methods", default=",".join(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)}")
    add("--subset", type=subset_argument, default=None,
        metavar="N_TRAIN,N_TEST", help="class-balanced image sample")
    add("--teacher-epochs", type=int, default=None)
    add("--epochs", type=int, default=None,
        help="epochs per method after the teacher")
    add("--batch-size", type=int, default=None)
    add("--lr", type=float, default=None,
        help="Adam learning rate of AutoReP, SNL and SENet")
    add("--teacher-lr", type=float, default=0.1,
        help="SGD learning rate of the teacher and CryptoNAS (cosine)")
    add("--weight-decay", type=float, default=5e-4,
        help="teacher and CryptoNAS weight decay (PyTorch convention)")
    add("--cryptonas-depth", type=int, default=1,
        help="ReLU layers per stage of the CryptoNAS networks")
    add("--cache-dir", default=None)
    add("--out", default=None,
        help="output folder (default runs/pareto or runs/pareto_quick)")
    add("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.methods = [m.strip() for m in args.methods.split(",")]
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from "
                     f"{', '.join(METHODS)}")
    if args.epochs < 1 or args.teacher_epochs < 1:
        parser.error("--epochs and --teacher-epochs must be >= 1")
    if not Path(args.data_dir).exists():
        parser.error(f"--data-dir {args.data_dir}: no such file or folder")
    args.budgets = [text.strip() for text in args.budgets.split(",")]
    for text in args.budgets:  # syntax only: percentages need the teacher
        try:
            check_budget_text(text)
        except ValueError as e:
            parser.error(f"--budgets: {e}")
    args.out = Path(args.out or ("runs/pareto_quick" if args.quick
                                 else "runs/pareto"))
    return args


def train_from_scratch(model, train_ds, epochs, steps_per_epoch, lr,
                       verbose):
    """SGD with momentum and cosine decay to 0 (the teacher recipe)."""
    model.compile(
        optimizer=cosine_sgd(lr, epochs * steps_per_epoch),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
    model.fit(train_ds, epochs=epochs, verbose=verbose,
              shuffle=False)  # the tf.data pipeline shuffles
    return model


def cryptonas_stem_stride(budget, depth, input_shape):
    """Smallest stem stride (1, 2, 4) giving a balanced width of at least
    ``CRYPTONAS_MIN_WIDTH``; 4 if none does."""
    for stride in (1, 2):
        try:
            width = balanced_width(budget, depth, input_shape,
                                   stem_stride=stride)
        except ValueError:
            continue
        if width >= CRYPTONAS_MIN_WIDTH:
            return stride
    return 4


class Benchmark:
    """Data, teacher and one training function per method."""

    def __init__(self, args):
        self.args = args
        self.verbose = 2
        (x, y), self.test, self.info = load_dataset(
            "cifar10", data_dir=args.data_dir, cache_dir=args.cache_dir,
            subset=args.subset, seed=args.seed)
        self.train = (x, y)
        self.train_ds, self.test_ds = make_datasets(
            self.train, self.test, self.info, args.batch_size, seed=args.seed)
        self.steps_per_epoch = math.ceil(len(y) / args.batch_size)
        self.sensitivity_data = (
            x[:SENSITIVITY_IMAGES].astype("float32") / 255,
            y[:SENSITIVITY_IMAGES])

    def accuracy(self, model):
        return evaluate(model, self.test_ds, self.test[1], top5=False)["top1"]

    def teacher(self):
        a = self.args
        keras.utils.set_random_seed(a.seed)
        model = get_model("resnet_small", input_shape=self.info.image_shape,
                          num_classes=self.info.num_classes,
                          weight_decay=a.weight_decay / 2,
                          preprocessing=normalization_layer(self.info))
        return train_from_scratch(model, self.train_ds, a.teacher_epochs,
                                  self.steps_per_epoch, a.teacher_lr,
                                  self.verbose)

    def autorep(self, teacher, budget):
        a = self.args
        student = train_autorep(
            teacher, budget, self.train_ds, epochs=a.epochs,
            lr=cosine_adam_schedule(a.lr, a.epochs * self.steps_per_epoch),
            budget_weight=DATASET_PRESETS["cifar10"]["budget_weight"],
            seed=a.seed, verbose=self.verbose)
        return harden(student, budget), f"{a.epochs} epochs"

    def _phases(self):
        search = max(1, self.args.epochs // 2)
        return search, self.args.epochs - search

    def snl(self, teacher, budget):
        search, finetune = self._phases()
        student = train_snl(teacher, budget, self.train_ds, epochs=search,
                            finetune_epochs=finetune, lr=self.args.lr,
                            verbose=self.verbose)
        return (harden(student, budget),
                f"<= {search} search + {finetune} fine-tune epochs")

    def senet(self, teacher, budget):
        search, finetune = self._phases()
        student = train_senet(
            teacher, budget, self.train_ds, epochs=search,
            finetune_epochs=finetune, lr=self.args.lr,
            sensitivity_data=self.sensitivity_data,
            batch_size=self.args.batch_size, seed=self.args.seed,
            verbose=self.verbose)
        return (harden(student, budget),
                f"{search} identification + {finetune} fine-tune epochs")

    def cryptonas(self, teacher, budget):
        a = self.args
        shape = self.info.image_shape
        stride = cryptonas_stem_stride(budget, a.cryptonas_depth, shape)
        width = balanced_width(budget, a.cryptonas_depth, shape,
                               stem_stride=stride)
        model = balanced_network(
            budget, a.cryptonas_depth, shape, self.info.num_classes,
            stem_stride=stride, weight_decay=a.weight_decay / 2,
            preprocessing=normalization_layer(self.info))
        epochs = a.teacher_epochs + a.epochs
        train_from_scratch(model, self.train_ds, epochs, self.steps_per_epoch,
                           a.teacher_lr, self.verbose)
        widths = "/".join(str(width * 4**s) for s in range(3))
        return model, (f"depth {a.cryptonas_depth}, widths {widths}, stem "
                       f"stride {stride}, {epochs} epochs from scratch")


def write_table(rows, out):
    """``pareto.csv`` and ``pareto.md``."""
    fields = ["method", "budget", "relu_count", "accuracy", "wall_seconds",
              "notes"]
    with open(out / "pareto.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| method | budget | ReLU count | accuracy | wall time (s) | "
             "notes |", "|---|---:|---:|---:|---:|---|"]
    for row in rows:
        budget = f"{row['budget']:,}" if row["budget"] != "" else "-"
        lines.append(
            f"| {row['method']} | {budget} | {row['relu_count']:,} | "
            f"{row['accuracy']:.2%} | {row['wall_seconds']:.0f} | "
            f"{row['notes']} |")
    lines.append("")
    lines.append("Wall time: each method's own training and hardening; the "
                 "teacher row is the shared teacher, which AutoReP, SNL and "
                 "SENet start from (CryptoNAS trains from scratch).")
    (out / "pareto.md").write_text("\n".join(lines) + "\n")
    return "\n".join(lines)


def plot(rows, out, title):
    """Accuracy against ReLU count, one line per method (log x axis)."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    teacher = rows[0]
    for method in dict.fromkeys(r["method"] for r in rows[1:]):
        points = sorted((r["relu_count"], r["accuracy"]) for r in rows
                        if r["method"] == method)
        ax.plot(*zip(*points), marker="o", label=method)
    ax.scatter([teacher["relu_count"]], [teacher["accuracy"]], marker="*",
               s=150, color="black", label=teacher["method"], zorder=3)
    ax.axhline(teacher["accuracy"], color="black", linestyle=":", alpha=0.5)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("ReLU count per example")
    ax.set_ylabel("test top-1 accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=120)


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    bench = Benchmark(args)
    start = time.perf_counter()
    teacher = bench.teacher()
    total = count_relus(teacher).total
    rows = [dict(method="teacher (all ReLU)", budget="", relu_count=total,
                 accuracy=bench.accuracy(teacher),
                 wall_seconds=time.perf_counter() - start,
                 notes=f"resnet_small, {args.teacher_epochs} epochs")]
    print(f"Teacher: {total:,} ReLUs, accuracy {rows[0]['accuracy']:.2%}",
          flush=True)
    for text in args.budgets:
        budget = parse_budget(text, total=total)
        for method in args.methods:
            keras.utils.set_random_seed(args.seed)
            start = time.perf_counter()
            model, notes = getattr(bench, method)(teacher, budget)
            wall = time.perf_counter() - start
            kept = count_relus(model).kept
            if kept > budget:
                raise AssertionError(f"{method} keeps {kept:,} ReLUs, over "
                                     f"the budget {budget:,}")
            rows.append(dict(method=method, budget=budget, relu_count=kept,
                             accuracy=bench.accuracy(model),
                             wall_seconds=wall, notes=notes))
            print(f"{method} @ {budget:,}: {kept:,} ReLUs, accuracy "
                  f"{rows[-1]['accuracy']:.2%}, {wall:.0f} s", flush=True)
    images = f"{len(bench.train[1]):,}/{len(bench.test[1]):,} images"
    print(write_table(rows, args.out))
    plot(rows, args.out, f"CIFAR-10 ({images}), resnet_small teacher")
    print(f"wrote {args.out / 'pareto.csv'}, pareto.md and pareto.png")


if __name__ == "__main__":
    main()
