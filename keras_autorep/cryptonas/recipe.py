"""CryptoNAS end to end: search, train and export a balanced network.

``python recipes/cryptonas.py --budget 86k`` calls ``main()``. Stages, each
resumed on a rerun of the same command (run folder
``<out>/runs/<run name>/``):

1. **search**: ``CryptoNASHyperModel`` with ``make_tuner`` (random search
   over depth, width multiplier and skip connections), ``--trials``
   candidates, ``--search-epochs`` each, objective ``val_accuracy`` on a
   held-out 10% of the training images (never the test split). Candidates
   over the budget are rejected before any training. Trials live in
   ``search/`` (keras-tuner, ``overwrite=False``).
2. **train**: the best candidate, from scratch, on all training images for
   ``--epochs`` (SGD, momentum 0.9, cosine decay, weight decay), then top-1
   test accuracy. Model, ``log.csv`` and backups in ``train/``.
3. **export**: ``keras_autorep.export.export_all`` to
   ``<out>/<run name>/<version>/`` with ``report.json``,
   ``relus_per_layer.png``, ``training.png`` and ``search.png``.

Like the AutoReP recipes the model takes [0, 1] images and normalises them
inside (``normalization_layer``); data loading, run-folder checks, the fit
loop (logs, TensorBoard, backup/restore), evaluation, the export and the
fields every report has are those of ``keras_autorep.pipeline.Recipe``.
"""

import argparse
import dataclasses
import math
import time
from pathlib import Path

import keras
from matplotlib.figure import Figure

from keras_autorep.budget import parse_budget
from keras_autorep.counting import count_relus
from keras_autorep.cryptonas.search import (
    CryptoNASHyperModel,
    make_tuner,
    trial_summaries,
)
from keras_autorep.data import make_datasets, normalization_layer
from keras_autorep.pipeline import (
    DATASET_PRESETS,
    MOMENTUM,
    Recipe,
    UsageError,
    add_run_arguments,
    check_run_name,
    data_source,
    evaluate,
    format_accuracy,
    one_line,
    read_log,
    split_validation,
)
from keras_autorep.pi import cost_report
from keras_autorep.plots import plot_history, plot_relus_per_layer

DEFAULTS = dict(subset=None, trials=20, search_epochs=10, epochs=200,
                batch_size=128, lr=0.1, weight_decay=5e-4, depths=(1, 2, 3),
                stem_stride=1)
QUICK_PRESET = dict(subset=(5_000, 1_000), trials=4, search_epochs=1,
                    epochs=4, batch_size=64)
VALIDATION_FRACTION = 0.1


def budget_count(text):
    """argparse type: a ReLU count (a percentage has no reference model)."""
    try:
        if text.strip().endswith("%"):
            raise ValueError
        return parse_budget(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid ReLU budget {text!r}: expected a count like 86000, 86k "
            "or 1.2M (CryptoNAS sizes the network from it; there is no "
            "model to take a percentage of)") from None


def depths_argument(text):
    """argparse type: comma-separated positive depths, e.g. ``1,2,3``."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected positive integers like 1,2,3, got {text!r}")
    return tuple(sorted({int(p) for p in parts}))


def build_parser():
    """The command line of ``recipes/cryptonas.py``."""
    parser = argparse.ArgumentParser(
        prog="recipes/cryptonas.py",
        description=(
            "CryptoNAS: search a ReLU-balanced network within --budget "
            "(depth, width multiplier, skip connections), train the best one "
            "and export it with a report."))
    add = parser.add_argument
    add("--budget", required=True, type=budget_count,
        help="ReLU budget: 86000, 86k or 1.2M")
    add("--dataset", choices=sorted(DATASET_PRESETS), default="cifar10",
        help="dataset (default cifar10)")
    add("--trials", type=int, default=None,
        help=f"candidates to examine, rejected ones included (default "
             f"{DEFAULTS['trials']}; --quick {QUICK_PRESET['trials']})")
    add("--search-epochs", type=int, default=None,
        help=f"training epochs per candidate (default "
             f"{DEFAULTS['search_epochs']}; --quick "
             f"{QUICK_PRESET['search_epochs']})")
    add("--epochs", type=int, default=None,
        help=f"training epochs of the best candidate (default "
             f"{DEFAULTS['epochs']}; --quick {QUICK_PRESET['epochs']})")
    add("--depths", type=depths_argument, default=None,
        help="candidate ReLU layers per stage (default 1,2,3)")
    add("--stem-stride", type=int, default=None, choices=(1, 2, 4),
        help="stride of a linear stem conv before the first stage (default "
             "1: none); 2 or 4 divide the ReLUs per channel by 4 or 16, for "
             "budgets below the smallest full-resolution network")
    add("--batch-size", type=int, default=None,
        help=f"batch size (default {DEFAULTS['batch_size']}; --quick "
             f"{QUICK_PRESET['batch_size']})")
    add("--lr", type=float, default=None,
        help=f"SGD learning rate, cosine decay to 0 (default "
             f"{DEFAULTS['lr']:g})")
    add("--weight-decay", type=float, default=None,
        help="weight decay, PyTorch convention (L2 of wd/2 on the kernels) "
             f"(default {DEFAULTS['weight_decay']:g})")
    add_run_arguments(parser, quick_subset=QUICK_PRESET["subset"],
                      default_run_name="<dataset>_cryptonas_<budget>[_quick]")
    add("--quick", action="store_true",
        help="CPU smoke preset: 5k/1k images, 4 candidates of 1 epoch, 4 "
             "epochs for the best, batch 64; explicit flags still win")
    return parser


@dataclasses.dataclass(frozen=True)
class Settings:
    """Resolved settings of a CryptoNAS run (command line + presets)."""

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

    @classmethod
    def from_args(cls, args):
        defaults = dict(DEFAULTS)
        if args.quick:
            defaults.update(QUICK_PRESET)
        values = {key: getattr(args, key) for key in
                  ("dataset", "budget", "data_dir", "cache_dir", "out",
                   "run_name", "seed", "quick")}
        for key, default in defaults.items():
            given = getattr(args, key)
            values[key] = default if given is None else given
        for key in ("trials", "search_epochs", "epochs", "batch_size"):
            if values[key] < 1:
                raise UsageError(f"--{key.replace('_', '-')} must be >= 1")
        if not values["lr"] > 0 or values["weight_decay"] < 0:
            raise UsageError("--lr must be > 0 and --weight-decay >= 0")
        return cls(**values)

    def training_key(self):
        """The settings that define the run (resume check)."""
        key = dataclasses.asdict(self)
        for name in ("out", "cache_dir", "run_name"):
            del key[name]
        key["data_dir"] = data_source(self.data_dir)
        key["subset"] = list(self.subset) if self.subset else None
        key["depths"] = list(self.depths)
        return key


def plot_search(trials, path, budget):
    """Validation accuracy against ReLU count of every search trial; the
    rejected (over-budget) candidates are marked on the x axis."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    done = [t for t in trials if t["status"] == "COMPLETED"]
    rejected = [t for t in trials if t["rejected"] and t["relus"] is not None]
    ax.scatter([t["relus"] for t in done], [t["val_accuracy"] for t in done],
               label="trained candidates")
    ax.scatter([t["relus"] for t in rejected], [0] * len(rejected),
               marker="x", color="red", label="rejected before training")
    ax.axvline(budget, color="red", linestyle="--",
               label=f"budget {budget:,}")
    ax.set_xlabel("ReLU count")
    ax.set_ylabel("validation accuracy")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


class CryptoNASRecipe(Recipe):
    """One CryptoNAS run; reuses the AutoReP recipe's data loading, checks,
    fit loop, evaluation, export and report, and replaces its stages.

    ``CryptoNASRecipe(settings)`` checks everything that needs no training
    (data, budget against the smallest candidate, run folder) and raises
    ``UsageError`` on bad input; ``run()`` executes the stages.
    """

    def __init__(self, settings):
        self.settings = settings
        self.out = Path(settings.out)
        self.times = {}
        keras.utils.set_random_seed(settings.seed)
        self._load_data()
        self.top5 = self.info.num_classes > 10
        self.search_split = split_validation(self.train, VALIDATION_FRACTION,
                                             settings.seed)
        steps = settings.search_epochs * math.ceil(
            len(self.search_split[0][1]) / settings.batch_size)
        try:
            self.hypermodel = CryptoNASHyperModel(
                settings.budget, self.info.image_shape, self.info.num_classes,
                depths=settings.depths, stem_stride=settings.stem_stride,
                weight_decay=settings.weight_decay / 2,
                preprocessing=lambda: normalization_layer(self.info),
                optimizer=lambda: self._sgd(settings.lr, steps))
        except ValueError as e:
            raise UsageError(f"--budget: {one_line(e)}") from None
        self.run_name = check_run_name(settings.run_name or (
            f"{settings.dataset}_cryptonas_{settings.budget}"
            + ("_quick" if settings.quick else "")))
        self.run_dir = self.out / "runs" / self.run_name
        self._check_run_folder()

    def run_stages(self):
        """Search, train and export, each resumed where it stopped; returns
        the report."""
        best, search_record = self.architecture_search()
        model, train_record = self.train_best(best)
        return self.export(model, search_record, train_record)

    def architecture_search(self):
        """The keras-tuner search; the best hyperparameters and a record."""
        s = self.settings
        (x_fit, y_fit), validation = self.search_split
        print(f"Search: {s.trials} candidates (depths {list(s.depths)}, "
              f"budget {s.budget:,} ReLUs; over-budget ones rejected before "
              f"training), {s.search_epochs} epoch(s) each on {len(y_fit):,} "
              f"images, validated on {len(validation[1]):,} held-out train "
              "images", flush=True)
        start = time.perf_counter()
        train_ds, validation_ds = make_datasets(
            (x_fit, y_fit), validation, self.info, s.batch_size, seed=s.seed)
        tuner = make_tuner(self.hypermodel, self.run_dir, "search",
                           max_trials=s.trials, seed=s.seed)
        tuner.search(train_ds, validation_data=validation_ds,
                     epochs=s.search_epochs, shuffle=False,  # pipeline does
                     verbose=0)
        trials = trial_summaries(tuner)
        best = tuner.get_best_hyperparameters(1)
        if not best:
            raise RuntimeError(
                "no candidate finished training; trial messages: "
                + "; ".join(str(t["message"]) for t in trials))
        architecture = self.hypermodel.architecture(best[0])
        print(f"Best candidate: {architecture}", flush=True)
        return best[0], dict(
            trials=trials, best=dict(best[0].values),
            architecture=architecture,
            rejected=sum(t["rejected"] for t in trials),
            wall_seconds=time.perf_counter() - start)

    def train_best(self, best):
        """The best candidate trained from scratch and its test accuracy."""
        s = self.settings
        path = self.run_dir / "train" / "model.keras"
        if path.is_file():
            print(f"Train: reusing {path}", flush=True)
            model = keras.saving.load_model(path, compile=False)
        else:
            print(f"Train: the best candidate for {s.epochs} epochs (SGD lr "
                  f"{s.lr:g}, momentum {MOMENTUM}, cosine decay, weight "
                  f"decay {s.weight_decay:g})", flush=True)
            keras.utils.set_random_seed(s.seed)
            model = self.hypermodel.network(best)
            model.compile(optimizer=self._sgd(s.lr, self._steps(s.epochs)),
                          **self._compile_args())
            self._fit("train", model, s.epochs)
            self._save_trained(model, path, ("train",))
        start = time.perf_counter()
        relus = count_relus(model)
        if relus.kept > s.budget:
            raise AssertionError(f"model has {relus.kept:,} ReLUs, above the "
                                 f"budget {s.budget:,}")
        accuracy = evaluate(model, self._datasets()[1], self.test[1],
                            self.top5)
        self.times["evaluate"] = time.perf_counter() - start
        print(f"Trained: {relus.kept:,} ReLUs (budget {s.budget:,}), test "
              f"{format_accuracy(accuracy)}", flush=True)
        history = read_log(self.run_dir / "train" / "log.csv")
        return model, dict(epochs=s.epochs, test_accuracy=accuracy,
                           relus=relus, history=history,
                           wall_seconds=sum(history["epoch_seconds"]))

    def export(self, model, search_record, train_record):
        """Export, report.json and plots; returns the report."""
        s = self.settings
        start = time.perf_counter()
        export_dir = self._export(model)
        relus, history = train_record["relus"], train_record["history"]
        plot_relus_per_layer(relus, export_dir / "relus_per_layer.png",
                             s.budget)
        plot_history({**history, "relu_count": [relus.kept] * len(
            history["epoch"])}, export_dir / "training.png", s.budget)
        plot_search(search_record["trials"], export_dir / "search.png",
                    s.budget)
        self.times["export"] = time.perf_counter() - start
        wall = {"data": self.times["data"],
                "search": search_record["wall_seconds"],
                "train": train_record["wall_seconds"],
                "evaluate": self.times["evaluate"],
                "export": self.times["export"]}
        report = dict(
            run_name=self.run_name,
            method="cryptonas",
            dataset=s.dataset,
            model=model.name,
            quick=s.quick,
            budget=s.budget,
            relu_count=relus.kept,
            relus=relus.to_dict(),
            architecture=search_record["architecture"],
            final_test_accuracy=train_record["test_accuracy"],
            search=search_record,
            train={k: v for k, v in train_record.items() if k != "relus"},
            wall_seconds={**wall, "total": sum(wall.values())},
            pi_cost=cost_report(model).to_dict(),
        )
        return self._write_report(export_dir, report)


def print_summary(report):
    architecture = report["architecture"]
    print()
    print(f"== {report['run_name']}: CryptoNAS on {report['dataset']} ==")
    print(f"architecture    depth {architecture['depth']} per stage, "
          f"width {architecture['width']}, skip {architecture['skip']}")
    print(f"test accuracy   {format_accuracy(report['final_test_accuracy'])}")
    print(f"ReLUs           {report['relu_count']:,} (budget "
          f"{report['budget']:,})")
    print(f"search          {len(report['search']['trials'])} trials, "
          f"{report['search']['rejected']} rejected before training")
    print(f"exported model  {report['export']['dir']}")
    print(f"report          {Path(report['export']['dir']) / 'report.json'}")


def main(argv=None):
    """Command-line entry point; returns 0. Bad input exits with status 2
    and a one-line message before any training."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_args(args)
        if settings.quick:
            n_train, n_test = settings.subset
            print(f"Quick preset (--quick): at most {n_train:,} train / "
                  f"{n_test:,} test images, {settings.trials} candidates of "
                  f"{settings.search_epochs} epoch(s), {settings.epochs} "
                  "epochs for the best: a CPU smoke run, far below the "
                  "accuracy of a full run.", flush=True)
        recipe = CryptoNASRecipe(settings)
    except UsageError as e:
        parser.error(str(e))
    print_summary(recipe.run())
    return 0
