"""Accuracy against ReLU count on real CIFAR-10: AutoReP, SNL, SENet, CryptoNAS.

One all-ReLU ``resnet_small`` teacher (73,728 ReLUs at 32x32) is trained
and shared; then at every budget (default 50%, 10% and 2.6% of the
teacher's ReLUs):

* **AutoReP**: ``keras_autorep.methods.train_autorep`` (selectors trained
  with CE + KD + budget loss, lambda as the CIFAR recipe, landed on the
  budget and fine-tuned), Adam with cosine decay to 1e-5;
* **SNL**: ``keras_autorep.methods.train_snl`` (mask search, binarise,
  fine-tune), Adam;
* **SENet**: ``keras_autorep.methods.train_senet`` (sensitivity allocation,
  mask identification, fine-tune), Adam;
* **CryptoNAS**: ``balanced_network(budget, depth)`` trained from scratch
  like the teacher (SGD, cosine decay). Its stem stride is the smallest of
  1, 2, 4 that gives a first-stage width of at least 8 channels (at 2.6%
  the budget is below the smallest full-resolution balanced network).

Every teacher-based method gets ``--epochs`` epochs, split between its
two phases: ``max(1, E // 2)`` search / identification, the rest
fine-tuning with the masks landed on the budget and frozen. CryptoNAS has
no teacher to start from and trains ``--teacher-epochs + --epochs``
epochs, the same number of epochs behind every final model. Two baselines
frame the table: **budget 0** (AutoReP with no ReLU kept: every site a
polynomial, the floor any method must beat) and the **teacher trained for
the same total epochs** as each student (the ceiling). The ReLU count
column is the final model's; ``searched`` is the count after the search
phase, before landing. Accuracy is top-1 on the test split; wall time is
each method's own training (+ hardening), the shared teacher apart.

Writes ``pareto.csv``, ``pareto.md`` and ``pareto.png`` to ``--out``; every
finished cell is kept in ``--out/cells.jsonl`` (its model in
``--out/models/``) and the teacher in ``--out/teacher.keras``, so a killed
run resumes where it stopped.

With ``--protocol P`` the table is also priced in what P costs: two more
baselines (**all identity**: AutoReP at budget 0 with identity in place of
every ReLU, a linear network; the budget-0 row is **all poly2**) and
**AutoReP with a cost budget** (``--cost-budgets``, fractions of the
teacher's predicted cost under P, ``--replacement auto``: each site learns
its form), then every model is exported, priced by the calibrated model
(bytes, rounds, latency on the stated LAN and WAN) and measured in a real
two-party run of P on ``--images`` test images. Writes
``pareto_<P>.csv``, ``pareto_<P>.md`` and ``pareto_<P>.png`` (top-1
against measured MB, predicted LAN and WAN latency); measurements are kept
in ``--out/priced_<P>.jsonl``.

    python benchmarks/pareto.py --data-dir ../shared/data/cifar10-images.tar.gz --quick
    python benchmarks/pareto.py --data-dir ../shared/data/cifar10-images.tar.gz
    python benchmarks/pareto.py --data-dir ../shared/data/cifar10-images.tar.gz --protocol spu-cheetah

Default ("full") setting, about an hour on 2 CPU cores: 10,000
class-balanced training images and the whole 10,000-image test split,
teacher 15 epochs, 8 epochs per method (CryptoNAS and the same-epochs
teacher 23), batch 64, Adam lr 4e-3 (the AutoReP quick recipe's). ``--quick``: 5,000 / 1,000 images,
teacher 3 epochs, 2 per method, same batch and learning rate. Explicit
flags (``--subset``, ``--teacher-epochs``, ``--epochs``, ``--batch-size``,
``--lr``) override either preset, e.g. for a paper-length run on a GPU.
"""

import argparse
import csv
import json
import math
import time
from pathlib import Path

import keras
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from keras_autorep import count_relus, harden, parse_budget
from keras_autorep.budgets import check_budget_text
from keras_autorep.costs import NETWORKS, protocols
from keras_autorep.export import export_all, versions
from keras_autorep.architectures import (
    balanced_network,
    balanced_width,
    get_model,
)
from keras_autorep.data import load_dataset, make_datasets, normalization_layer
from keras_autorep.methods import METHODS, Plan
from keras_autorep.pi import cost_budget, cost_report, measure
from keras_autorep.recipes.cli import subset_argument
from keras_autorep.recipes.presets import DATASET_PRESETS, QUICK_PRESET
from keras_autorep.recipes.reporting import evaluate
from keras_autorep.training.schedules import cosine_sgd

BUDGET_0 = "budget 0, all poly2"
ALL_IDENTITY = "budget 0, all identity"
COST = "autorep, cost budget (auto forms)"
TEACHER_SAME_EPOCHS = "teacher, same total epochs"
FULL = dict(subset=(10_000, 10_000), teacher_epochs=15, epochs=8,
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
    add("--protocol", choices=protocols(), default=None,
        help="also price every model under this protocol and measure it "
             "in a real two-party run (see the module doc)")
    add("--cost-budgets", default="60%,40%",
        help="with --protocol: cost budgets of AutoReP with learned forms, "
             "percentages of the teacher's predicted cost (default "
             "60%%,40%%)")
    add("--images", type=int, default=2,
        help="with --protocol: test images of each two-party run")
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
    try:
        args.cost_budgets = [float(text.strip().rstrip("%")) / 100
                             for text in args.cost_budgets.split(",")]
    except ValueError:
        parser.error(f"--cost-budgets: expected percentages like 60%,40%, "
                     f"got {args.cost_budgets!r}")
    if not all(0 < f <= 1 for f in args.cost_budgets) or args.images < 1:
        parser.error("--cost-budgets must be in (0%, 100%] and --images "
                     ">= 1")
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

    def teacher(self, epochs):
        """An all-ReLU ``resnet_small`` trained from scratch for
        ``epochs``."""
        a = self.args
        keras.utils.set_random_seed(a.seed)
        model = get_model("resnet_small", input_shape=self.info.image_shape,
                          num_classes=self.info.num_classes,
                          weight_decay=a.weight_decay / 2,
                          preprocessing=normalization_layer(self.info))
        return train_from_scratch(model, self.train_ds, epochs,
                                  self.steps_per_epoch, a.teacher_lr,
                                  self.verbose)

    def shared_teacher(self):
        """The teacher every method starts from, trained once and kept in
        ``--out/teacher.keras``."""
        path = self.args.out / "teacher.keras"
        if path.is_file():
            return keras.saving.load_model(path), 0.0
        start = time.perf_counter()
        teacher = self.teacher(self.args.teacher_epochs)
        teacher.save(path)
        return teacher, time.perf_counter() - start

    def teacher_same_epochs(self, teacher, budget):
        """The ceiling: the teacher trained for as many epochs as teacher
        + student together."""
        epochs = self.args.teacher_epochs + self.args.epochs
        return self.teacher(epochs), f"all ReLU, {epochs} epochs from scratch"

    def budget0(self, teacher, budget):
        """The floor: AutoReP keeping no ReLU (every site a polynomial)."""
        model, notes = self.autorep(teacher, 0)
        return model, f"AutoReP at budget 0, {notes}"

    def plan(self, replacement=None):
        """The methods' ``Plan``: ``max(1, E // 2)`` search epochs, the
        rest fine-tuning, the AutoReP CIFAR recipe's lambda."""
        search = max(1, self.args.epochs // 2)
        return Plan(epochs=search, finetune_epochs=self.args.epochs - search,
                    lr=self.args.lr, steps_per_epoch=self.steps_per_epoch,
                    budget_weight=DATASET_PRESETS["cifar10"]["budget_weight"],
                    replacement=replacement, seed=self.args.seed)

    def train_method(self, name, teacher, budget, replacement=None,
                     **options):
        """``METHODS[name].train`` with the benchmark's plan, hardened;
        the callbacks record the count at the end of the first phase."""
        method, plan = METHODS[name], self.plan(replacement)

        def callbacks(phase):
            if phase != method.phases[0]:
                return []
            return [keras.callbacks.LambdaCallback(on_epoch_end=lambda _, log:
                    setattr(self, "searched", log.get("relu_count")))]

        student = method.train(teacher, budget, self.train_ds, plan=plan,
                               callbacks=callbacks, verbose=self.verbose,
                               **options)
        return harden(student, budget), (
            f"{plan.epochs} {method.phases[0]} + {plan.finetune_epochs} "
            "fine-tune epochs")

    def autorep(self, teacher, budget):
        return self.train_method("autorep", teacher, budget)

    def all_identity(self, teacher, budget):
        """AutoReP at budget 0 with the identity at every site."""
        model, notes = self.train_method("autorep", teacher, 0,
                                         replacement="identity")
        return model, f"every ReLU an identity, {notes}"

    def autorep_cost(self, teacher, text):
        """AutoReP with learned forms on the cost budget ``text`` under
        ``--protocol``."""
        student = METHODS["autorep"].student(teacher, replacement="auto")
        budget = cost_budget(text, student, self.args.protocol)
        model, notes = self.train_method("autorep", teacher, budget,
                                         replacement="auto")
        return model, f"{text} under {self.args.protocol}, {notes}"

    def snl(self, teacher, budget):
        return self.train_method("snl", teacher, budget)

    def senet(self, teacher, budget):
        return self.train_method(
            "senet", teacher, budget, sensitivity_data=self.sensitivity_data,
            batch_size=self.args.batch_size)

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
    fields = ["method", "budget", "searched", "relu_count", "accuracy",
              "wall_seconds", "notes"]
    with open(out / "pareto.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)

    def number(value):
        if isinstance(value, str):
            return value or "-"
        return "-" if value is None else f"{int(value):,}"

    lines = ["| method | budget | searched | ReLU count | accuracy | wall "
             "time (s) | notes |", "|---|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        lines.append(
            f"| {row['method']} | {number(row['budget'])} | "
            f"{number(row['searched'])} | {row['relu_count']:,} | "
            f"{row['accuracy']:.2%} | {row['wall_seconds']:.0f} | "
            f"{row['notes']} |")
    lines.append("")
    lines.append("searched: the ReLU count after the search phase, before "
                 "the masks landed on the budget. Wall time: each method's "
                 "own training and hardening; the teacher row is the shared "
                 "teacher, which AutoReP, SNL and SENet start from "
                 "(CryptoNAS and the same-epochs teacher train from "
                 "scratch).")
    (out / "pareto.md").write_text("\n".join(lines) + "\n")
    return "\n".join(lines)


def plot(rows, out, title):
    """Accuracy against ReLU count, one line per method (log x axis); the
    teachers as stars, the budget-0 floor as a dashed line."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for method in dict.fromkeys(r["method"] for r in rows
                                if r["method"] in METHODS):
        points = sorted((max(1, r["relu_count"]), r["accuracy"])
                        for r in rows if r["method"] == method)
        ax.plot(*zip(*points), marker="o", label=method)
    for row, marker in zip([r for r in rows if r["method"].startswith(
            "teacher")], ("*", "P")):
        ax.scatter([row["relu_count"]], [row["accuracy"]], marker=marker,
                   s=150, color="black", label=row["method"], zorder=3)
        ax.axhline(row["accuracy"], color="black", linestyle=":", alpha=0.5)
    for row in rows:
        if row["method"] == BUDGET_0:
            ax.axhline(row["accuracy"], color="grey", linestyle="--",
                       label=f"{BUDGET_0} (floor)")
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


def finished_cells(out):
    """``{(method, budget): row}`` of the cells a previous run finished."""
    path = out / "cells.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines()
            if line.strip()]
    return {(row["method"], row["budget"]): row for row in rows}


def model_path(out, method, budget):
    """Where a cell's model is kept."""
    slug = "".join(c if c.isalnum() else "_" for c in f"{method}_{budget}")
    (out / "models").mkdir(parents=True, exist_ok=True)
    return out / "models" / f"{slug}.keras"


def run_cell(bench, done, method, budget, train, earlier_seconds=0.0):
    """One row of the table: from a previous run, or trained now and
    recorded in ``cells.jsonl`` (``earlier_seconds`` of training done
    before ``train()`` count towards its wall time)."""
    if (method, budget) in done:
        row = done[(method, budget)]
        print(f"{method} @ {budget or '-'}: from the previous run", flush=True)
        return row
    keras.utils.set_random_seed(bench.args.seed)
    bench.searched = None
    start = time.perf_counter()
    model, notes = train()
    wall = time.perf_counter() - start + earlier_seconds
    model.save(model_path(bench.args.out, method, budget))
    kept = count_relus(model).kept
    if isinstance(budget, int) and kept > budget:
        raise AssertionError(f"{method} keeps {kept:,} ReLUs, over the "
                             f"budget {budget:,}")
    searched = None if bench.searched is None else int(bench.searched)
    row = dict(method=method, budget=budget, searched=searched,
               relu_count=kept, accuracy=bench.accuracy(model),
               wall_seconds=wall, notes=notes)
    with open(bench.args.out / "cells.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"{method} @ {budget or '-'}: {kept:,} ReLUs, accuracy "
          f"{row['accuracy']:.2%}, {wall:.0f} s", flush=True)
    return row


def priced_cells(out, protocol):
    """``{(method, budget): row}`` priced and measured under ``protocol``
    by a previous run."""
    path = out / f"priced_{protocol}.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines()
            if line.strip()]
    return {(row["method"], row["budget"]): row for row in rows}


def price_cell(bench, done, row):
    """``row`` under ``--protocol``: its model exported, priced by the
    calibrated model and measured in a real two-party run (kept in
    ``priced_<protocol>.jsonl``)."""
    key = (row["method"], row["budget"])
    if key in done:
        return done[key]
    out, protocol = bench.args.out, bench.args.protocol
    path = model_path(out, *key)
    folder = out / "exports" / path.stem
    if versions(folder):
        version_dir = folder / str(versions(folder)[-1])
    else:
        version_dir = export_all(keras.saving.load_model(path, compile=False),
                                 out / "exports", path.stem)
    predicted = cost_report(version_dir, names=[protocol]).predictions[
        protocol][0]
    images = bench.test[0][:bench.args.images].astype("float32")
    measured = measure(version_dir, protocol, images)
    priced = dict(
        row, predicted_mb=predicted.bytes / 1e6,
        predicted_rounds=predicted.rounds,
        lan_ms=predicted.latency_ms(NETWORKS["lan"]),
        wan_ms=predicted.latency_ms(NETWORKS["wan"]),
        measured_mb=measured["bytes"] / 1e6,
        measured_rounds=measured["rounds"],
        top1_agreement=measured["top1_agreement"])
    with open(out / f"priced_{protocol}.jsonl", "a") as f:
        f.write(json.dumps(priced) + "\n")
    print(f"{row['method']} @ {row['budget'] or '-'} under {protocol}: "
          f"measured {priced['measured_mb']:,.2f} MB (predicted "
          f"{priced['predicted_mb']:,.2f}), {measured['rounds']:,} rounds "
          f"(predicted {predicted.rounds:,.0f})", flush=True)
    return priced


COST_FIELDS = ["method", "budget", "relu_count", "accuracy", "measured_mb",
               "predicted_mb", "measured_rounds", "predicted_rounds",
               "lan_ms", "wan_ms", "top1_agreement", "notes"]


def write_cost_table(rows, out, protocol):
    """``pareto_<protocol>.csv`` and ``.md``."""
    with open(out / f"pareto_{protocol}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, COST_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"| method | budget | ReLUs | top-1 | measured MB | predicted "
             f"MB | rounds (predicted) | LAN ms | WAN ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in sorted(rows, key=lambda r: r["measured_mb"]):
        budget = row["budget"]
        budget = (f"{budget:,}" if isinstance(budget, int)
                  else budget or "-")
        lines.append(
            f"| {row['method']} | {budget} | {row['relu_count']:,} | "
            f"{row['accuracy']:.2%} | {row['measured_mb']:,.2f} | "
            f"{row['predicted_mb']:,.2f} | {row['measured_rounds']:,} "
            f"({row['predicted_rounds']:,.0f}) | {row['lan_ms']:,.0f} | "
            f"{row['wan_ms']:,.0f} |")
    lan, wan = NETWORKS["lan"].text(), NETWORKS["wan"].text()
    lines.append("")
    lines.append(f"{protocol}: bytes of one inference (both directions) "
                 "measured in a real two-party run; rounds measured, "
                 "predicted in brackets; latency predicted by the "
                 f"calibrated model on the stated LAN ({lan}) and WAN "
                 f"({wan}).")
    (out / f"pareto_{protocol}.md").write_text("\n".join(lines) + "\n")
    return "\n".join(lines)


def plot_costs(rows, out, protocol, title):
    """Top-1 against measured MB, predicted LAN and WAN latency."""
    fig = Figure(figsize=(14, 4.5))
    axes = fig.subplots(1, 3)
    for ax, key, label in zip(
            axes, ("measured_mb", "lan_ms", "wan_ms"),
            ("measured MB per inference", "predicted LAN latency (ms)",
             "predicted WAN latency (ms)")):
        for method in dict.fromkeys(r["method"] for r in rows):
            points = sorted((r[key], r["accuracy"]) for r in rows
                            if r["method"] == method)
            ax.plot(*zip(*points), marker="o", label=method)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test top-1 accuracy")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{title}, {protocol}")
    fig.tight_layout()
    fig.savefig(out / f"pareto_{protocol}.png", dpi=120)


def cost_rows(bench, done, teacher, rows):
    """With ``--protocol``: the all-identity and cost-budget rows, then
    every row priced and measured."""
    args = bench.args
    rows = rows + [run_cell(bench, done, ALL_IDENTITY, 0,
                            lambda: bench.all_identity(teacher, 0))]
    student = METHODS["autorep"].student(teacher, replacement="auto")
    relu_cost = cost_budget("1GB", student, args.protocol).all_relu()
    for fraction in args.cost_budgets:
        text = f"{fraction * relu_cost / 1e6:.3f}MB"
        rows.append(run_cell(bench, done, COST, text,
                             lambda: bench.autorep_cost(teacher, text)))
    priced = priced_cells(args.out, args.protocol)
    return [price_cell(bench, priced, row) for row in rows]


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    bench = Benchmark(args)
    done = finished_cells(args.out)
    teacher, wall = bench.shared_teacher()
    total = count_relus(teacher).total
    rows = [run_cell(bench, done, "teacher (all ReLU)", "", lambda: (
        teacher, f"resnet_small, {args.teacher_epochs} epochs"), wall)]
    rows.append(run_cell(
        bench, done, TEACHER_SAME_EPOCHS, "",
        lambda: bench.teacher_same_epochs(teacher, None)))
    rows.append(run_cell(bench, done, BUDGET_0, 0,
                         lambda: bench.budget0(teacher, 0)))
    for text in args.budgets:
        budget = parse_budget(text, total=total)
        for method in args.methods:
            rows.append(run_cell(
                bench, done, method, budget,
                lambda: getattr(bench, method)(teacher, budget)))
    images = f"{len(bench.train[1]):,}/{len(bench.test[1]):,} images"
    title = f"CIFAR-10 ({images}), resnet_small teacher"
    print(write_table(rows, args.out))
    plot(rows, args.out, title)
    print(f"wrote {args.out / 'pareto.csv'}, pareto.md and pareto.png")
    if args.protocol:
        priced = cost_rows(bench, done, teacher, rows)
        print(write_cost_table(priced, args.out, args.protocol))
        plot_costs(priced, args.out, args.protocol, title)
        print(f"wrote {args.out}/pareto_{args.protocol}.csv, .md and .png")


if __name__ == "__main__":
    main()
