"""The stages of an architecture-search method (CryptoNAS).

1. **search** (``Method.search``): ``--trials`` candidates of the budget's
   search space, ``--search-epochs`` each, objective ``val_accuracy`` on a
   held-out 10 % of the training images (never the test split);
   candidates over the budget are rejected before any training. Trials
   live in ``<run folder>/search/`` (keras-tuner, resumed on a rerun);
   with keras-tuner's chief/worker variables the same command is the
   chief (serves the trials, then trains and exports) or a worker
   (``search_worker``: trials only);
2. **train** (``Method.train``): the best candidate from scratch on all
   training images for ``--epochs``, then top-1 test accuracy; model,
   ``log.csv`` and backups in ``train/``;
3. the sanity check and the export (``reporting``), with ``search.png``.

Like the teacher-based recipes the model takes [0, 1] images and
normalises them inside (``normalization_layer``).
"""

import time

from keras_autorep.data import normalization_layer, split_validation
from keras_autorep.graph import count_relus
from keras_autorep.recipes.plots import plot_history, plot_search
from keras_autorep.recipes.presets import VALIDATION_FRACTION
from keras_autorep.recipes.reporting import (
    check_sane,
    export_report,
    format_accuracy,
    one_line,
)
from keras_autorep.recipes.settings import UsageError


def prepare(run, method, given=None):
    """The ``Recipe`` fields of a search run: the budget, the held-out
    split and the search space; ``UsageError`` when the budget fits no
    candidate."""
    s = run.settings
    search_split = split_validation(run.train, VALIDATION_FRACTION, s.seed)
    try:
        hypermodel = method.hypermodel(
            s.budget, run.info.image_shape, run.info.num_classes,
            run.plan(), depths=s.depths, stem_stride=s.stem_stride,
            weight_decay=s.weight_decay / 2,
            preprocessing=lambda: normalization_layer(run.info),
            search_steps=run.steps(s.search_epochs,
                                   images=len(search_split[0][1])))
    except ValueError as e:
        raise UsageError(f"--budget: {one_line(e)}") from None
    return dict(budget=hypermodel.budget, hypermodel=hypermodel,
                search_split=search_split)


def architecture_search(recipe):
    """The search; the best hyperparameters and a record (``None`` in a
    keras-tuner worker)."""
    run, s = recipe.run, recipe.run.settings
    (x_fit, y_fit), validation = recipe.search_split
    print(f"Search: {s.trials} candidates (depths {list(s.depths)}, "
          f"budget {recipe.budget:,} ReLUs; over-budget ones rejected "
          f"before training), {s.search_epochs} epoch(s) each on "
          f"{len(y_fit):,} images, validated on {len(validation[1]):,} "
          "held-out train images", flush=True)
    start = time.perf_counter()
    train_ds, validation_ds = run.datasets((x_fit, y_fit), validation)
    best, record = recipe.method.search(
        recipe.hypermodel, train_ds, validation_ds, run.folder.path,
        trials=s.trials, epochs=s.search_epochs, seed=s.seed)
    if record is not None:
        print(f"Best candidate: {record['architecture']}", flush=True)
        run.times["search"] = record["wall_seconds"] = (
            time.perf_counter() - start)
    return best, record


def search_worker(recipe):
    """A keras-tuner worker's share: the trials its chief hands out."""
    architecture_search(recipe)


def train_stage(recipe, best):
    """The best candidate trained from scratch, its count, test accuracy
    and record."""
    run, s, method = recipe.run, recipe.run.settings, recipe.method
    plan = run.plan()

    def train():
        print(f"Train: the best candidate for {s.epochs} epochs "
              f"({method.optimizer}, lr {s.lr:g} cosine-decayed to 0, "
              f"weight decay {s.weight_decay:g})", flush=True)
        train_ds, test_ds = run.datasets()
        return method.train(
            recipe.hypermodel, best, train_ds, test_ds, plan=plan,
            metrics=run.metrics(),
            callbacks=run.callbacks()("train"),
            verbose=run.verbose())

    model = run.folder.trained_model(
        run.folder.stage("train") / "model.keras", train, ("train",),
        "Train")
    start = time.perf_counter()
    count = count_relus(model)
    if count.kept > recipe.budget:
        raise AssertionError(f"model has {count.kept:,} ReLUs, above the "
                             f"budget {recipe.budget:,}")
    accuracy = run.evaluate(model)
    run.times["evaluate"] = time.perf_counter() - start
    print(f"Trained: {count.kept:,} ReLUs (budget {recipe.budget:,}), "
          f"test {format_accuracy(accuracy)}", flush=True)
    history = run.folder.log("train")
    run.times["train"] = sum(history["epoch_seconds"])
    record = dict(method.record(plan), test_accuracy=accuracy,
                  history=history, wall_seconds=run.times["train"])
    return model, count, accuracy, record


def run_stages(recipe):
    """Search, train, check and export; returns the report."""
    run = recipe.run
    with run.scope():
        best, search_record = architecture_search(recipe)
        model, count, accuracy, train_record = train_stage(recipe, best)
    model = run.gathered(model)
    check_sane(run, model, accuracy)
    architecture = search_record["architecture"]
    fields = dict(
        summary=(f"cryptonas: depth {architecture['depth']} per stage, "
                 f"width {architecture['width']}, skip "
                 f"{architecture['skip']}; {len(search_record['trials'])} "
                 f"trials, {search_record['rejected']} rejected before "
                 "training"),
        budget_noun="ReLUs", model=model.name, architecture=architecture,
        search=search_record, train=train_record)
    history = train_record["history"]
    plots = {
        "training.png": lambda path: plot_history(
            {**history, "relu_count": [count.kept] * len(history["epoch"])},
            path, recipe.budget),
        "search.png": lambda path: plot_search(
            search_record["trials"], path, recipe.budget),
    }
    return export_report(recipe, model, count, accuracy, fields, plots)
