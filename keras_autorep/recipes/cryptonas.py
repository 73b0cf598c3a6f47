"""CryptoNAS end to end: search, train and export a balanced network.

``python recipes/cryptonas.py --budget 86k`` resolves its settings, then
``prepare_cryptonas(settings)`` checks everything that needs no training
and ``run_cryptonas(recipe)`` executes the stages, each resumed on a rerun
of the same command (run folder ``<out>/runs/<run name>/``):

1. **search**: ``CryptoNASHyperModel`` with ``make_tuner`` (random search
   over depth, width multiplier and skip connections), ``--trials``
   candidates, ``--search-epochs`` each, objective ``val_accuracy`` on a
   held-out 10% of the training images (never the test split). Candidates
   over the budget are rejected before any training. Trials live in
   ``search/`` (keras-tuner, ``overwrite=False``). With keras-tuner's
   chief/worker variables the same command is the chief (which serves
   the trials, then trains and exports) or a worker (``search_worker``:
   trials only).
2. **train**: the best candidate, from scratch, on all training images for
   ``--epochs`` (SGD, momentum 0.9, cosine decay, weight decay), then top-1
   test accuracy. Model, ``log.csv`` and backups in ``train/``.
3. **export**: ``publish`` to ``<out>/<run name>/<version>/`` with
   ``report.json``, ``relus_per_layer.png``, ``training.png`` and
   ``search.png``.

Like the AutoReP recipes the model takes [0, 1] images and normalises them
inside (``normalization_layer``); the data, run folder, fit loop,
evaluation and publishing are the shared ``Run`` and ``publish``.
"""

import dataclasses
import time
from pathlib import Path

import keras

from keras_autorep.adapters.keras_tuner_roles import tuner_role
from keras_autorep.data import normalization_layer, split_validation
from keras_autorep.graph import count_relus
from keras_autorep.pi import cost_report
from keras_autorep.recipes.plots import (
    plot_history,
    plot_relus_per_layer,
    plot_search,
)
from keras_autorep.recipes.presets import VALIDATION_FRACTION
from keras_autorep.recipes.reporting import format_accuracy, one_line, publish
from keras_autorep.recipes.run import Run, distribution, load_run_data
from keras_autorep.recipes.run_folder import RunFolder
from keras_autorep.recipes.settings import UsageError, check_run_name
from keras_autorep.search import (
    CryptoNASHyperModel,
    make_tuner,
    trial_summaries,
)
from keras_autorep.training.schedules import MOMENTUM, cosine_sgd


@dataclasses.dataclass
class CryptoNASRecipe:
    """A prepared CryptoNAS run: the ``Run``, the search space and the
    held-out split of the training images the search validates on."""

    run: Run
    hypermodel: CryptoNASHyperModel
    search_split: tuple


def prepare_cryptonas(settings):
    """Every check that needs no training (settings against the run
    folder, data, budget against the smallest candidate), then the run
    folder is claimed; ``UsageError`` on bad input."""
    s = settings
    keras.utils.set_random_seed(s.seed)
    folder = RunFolder(s.out, check_run_name(
        s.run_name or s.default_run_name()))
    folder.check_settings(s.training_key())
    data = load_run_data(s)
    search_split = split_validation(data.train, VALIDATION_FRACTION, s.seed)
    run = Run(s, data, folder, distribution(s))
    steps = run.steps(s.search_epochs, images=len(search_split[0][1]))
    try:
        hypermodel = CryptoNASHyperModel(
            s.budget, data.info.image_shape, data.info.num_classes,
            depths=s.depths, stem_stride=s.stem_stride,
            weight_decay=s.weight_decay / 2,
            preprocessing=lambda: normalization_layer(data.info),
            optimizer=lambda: cosine_sgd(s.lr, steps))
    except ValueError as e:
        raise UsageError(f"--budget: {one_line(e)}") from None
    if tuner_role() != "worker":  # the chief holds the run folder
        folder.claim(s.training_key(), s.wait)
    return CryptoNASRecipe(run, hypermodel, search_split)


def architecture_search(recipe):
    """The keras-tuner search; the best hyperparameters and a record."""
    run, s = recipe.run, recipe.run.settings
    (x_fit, y_fit), validation = recipe.search_split
    print(f"Search: {s.trials} candidates (depths {list(s.depths)}, "
          f"budget {s.budget:,} ReLUs; over-budget ones rejected before "
          f"training), {s.search_epochs} epoch(s) each on {len(y_fit):,} "
          f"images, validated on {len(validation[1]):,} held-out train "
          "images", flush=True)
    start = time.perf_counter()
    train_ds, validation_ds = run.datasets((x_fit, y_fit), validation)
    tuner = make_tuner(recipe.hypermodel, run.folder.path, "search",
                       max_trials=s.trials, seed=s.seed)
    tuner.search(train_ds, validation_data=validation_ds,
                 epochs=s.search_epochs, shuffle=False,  # pipeline does
                 verbose=0)
    if tuner_role() == "worker":  # the chief reports the search
        return None, None
    trials = trial_summaries(tuner)
    best = tuner.get_best_hyperparameters(1)
    if not best:
        raise RuntimeError(
            "no candidate finished training; trial messages: "
            + "; ".join(str(t["message"]) for t in trials))
    architecture = recipe.hypermodel.architecture(best[0])
    print(f"Best candidate: {architecture}", flush=True)
    run.times["search"] = time.perf_counter() - start
    return best[0], dict(
        trials=trials, best=dict(best[0].values),
        architecture=architecture,
        rejected=sum(t["rejected"] for t in trials),
        wall_seconds=run.times["search"])


def search_worker(recipe):
    """A keras-tuner worker's share: the trials its chief hands out; the
    chief finishes the run."""
    with recipe.run.scope():
        architecture_search(recipe)


def train_best(recipe, best):
    """The best candidate trained from scratch and its test accuracy."""
    run, s = recipe.run, recipe.run.settings

    def train():
        print(f"Train: the best candidate for {s.epochs} epochs (SGD lr "
              f"{s.lr:g}, momentum {MOMENTUM}, cosine decay, weight "
              f"decay {s.weight_decay:g})", flush=True)
        keras.utils.set_random_seed(s.seed)
        model = recipe.hypermodel.network(best)
        model.compile(optimizer=cosine_sgd(s.lr, run.steps(s.epochs)),
                      **run.compile_args())
        run.fit("train", model, s.epochs)
        return model

    model = run.folder.trained_model(
        run.folder.stage("train") / "model.keras", train, ("train",), "Train")
    start = time.perf_counter()
    relus = count_relus(model)
    if relus.kept > s.budget:
        raise AssertionError(f"model has {relus.kept:,} ReLUs, above the "
                             f"budget {s.budget:,}")
    accuracy = run.evaluate(model)
    run.times["evaluate"] = time.perf_counter() - start
    print(f"Trained: {relus.kept:,} ReLUs (budget {s.budget:,}), test "
          f"{format_accuracy(accuracy)}", flush=True)
    history = run.folder.log("train")
    run.times["train"] = sum(history["epoch_seconds"])
    return model, dict(epochs=s.epochs, test_accuracy=accuracy,
                       relus=relus, history=history,
                       wall_seconds=run.times["train"])


def export_trained(recipe, model, search_record, train_record):
    """Publish the trained network with report and plots; returns the
    report."""
    s = recipe.run.settings
    relus, history = train_record["relus"], train_record["history"]
    report = dict(
        run_name=recipe.run.folder.name,
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
        pi_cost=cost_report(model).to_dict(),
    )
    per_epoch_relus = [relus.kept] * len(history["epoch"])
    plots = {
        "relus_per_layer.png": lambda path: plot_relus_per_layer(
            relus, path, s.budget),
        "training.png": lambda path: plot_history(
            {**history, "relu_count": per_epoch_relus}, path, s.budget),
        "search.png": lambda path: plot_search(
            search_record["trials"], path, s.budget),
    }
    return publish(recipe.run, model, report, plots)


def run_cryptonas(recipe):
    """Search, train and export, each resumed where it stopped; returns the
    report."""

    def stages():
        with recipe.run.scope():
            best, search_record = architecture_search(recipe)
            model, train_record = train_best(recipe, best)
        return export_trained(recipe, recipe.run.gathered(model),
                              search_record, train_record)

    return recipe.run.folder.run_once(stages)


def print_cryptonas_summary(report):
    """The closing lines of a CryptoNAS run."""
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
