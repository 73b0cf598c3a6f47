"""The AutoReP / SNL / SENet recipe as stage functions.

``python recipes/cifar10.py --budget 12.9k`` resolves its settings, then
``prepare(settings)`` checks everything that needs no training and
``run_recipe(recipe)`` executes the stages, each skipped on a rerun once it
has finished:

1. **teacher** (``keras_autorep.recipes.teacher``): the all-ReLU model
   (``keras.Input`` -> dataset normalisation -> backbone), trained with
   SGD + momentum and cosine decay, or loaded with ``--teacher``; trained
   teachers are cached in ``<out>/teachers/`` and reused by later runs.
2. **allocation** (``--allocation``, optional): a per-layer split of the
   budget (``keras_autorep.allocation``): it seeds AutoReP's masks, fixes
   SNL's binarisation per layer and gives SENet its per-layer counts.
3. **search** (``--method``): ``train_autorep``, ``train_snl`` or
   ``train_senet`` from the teacher, Adam with cosine decay to 1e-5 in
   every phase. The result is ``<run folder>/search/student.keras``.
4. **harden**: ``harden(student, budget)`` (never above the budget) and test
   accuracy (top-1, and top-5 with more than 10 classes).
5. **export**: ``publish`` to ``<out>/<run name>/<version>/`` with
   ``report.json`` and PNG plots in the same folder.
"""

import dataclasses
import time
from pathlib import Path

import keras

from keras_autorep.adapters.keras_tuner_roles import tuner_role
from keras_autorep.budgets import parse_budget
from keras_autorep.export import Calibration, UnstableModelError, check_outputs
from keras_autorep.graph import (
    check_rewritable,
    count_relus,
    harden,
)
from keras_autorep.methods import METHODS
from keras_autorep.pi import cost_report
from keras_autorep.pi.replacements import choose_replacements
from keras_autorep.recipes.allocation import allocation_stage
from keras_autorep.recipes.plots import plot_history, plot_relus_per_layer
from keras_autorep.recipes.presets import (
    AUTOREP_FINETUNE_LR_FRACTION,
    PHASES,
)
from keras_autorep.recipes.reporting import format_accuracy, one_line, publish
from keras_autorep.recipes.run import Run, distribution, load_run_data
from keras_autorep.recipes.run_folder import RunFolder
from keras_autorep.recipes.settings import UsageError, check_run_name
from keras_autorep.recipes.teacher import (
    build_model,
    load_teacher_file,
    teacher_is_file,
    teacher_stage,
)
from keras_autorep.training.distribute import in_scope
from keras_autorep.training.schedules import FINAL_LR, cosine_adam_schedule


@dataclasses.dataclass
class Recipe:
    """A prepared recipe run: the ``Run``, the model to start from (the
    given teacher, or the freshly initialised one to train), the budget
    and the model's total ReLUs."""

    run: Run
    model: keras.Model
    budget: int
    total_relus: int


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


# ------------------------------------------------------------------ checks


def check_model(model, info, settings):
    """``(budget, total)`` of a model that fits the data and can be
    converted, ``total`` counting the elements of every ``--activations``
    site; ``UsageError`` otherwise."""
    expected = (None, *info.image_shape)
    if (tuple(model.input_shape) != expected
            or model.output_shape != (None, info.num_classes)):
        raise UsageError(
            f"--teacher {settings.teacher}: model maps "
            f"{model.input_shape} to {model.output_shape}; this data "
            f"needs {expected} -> (None, {info.num_classes})")
    try:
        check_rewritable(model)
        count = count_relus(model)
    except (TypeError, ValueError) as e:
        raise UsageError(f"cannot convert model {model.name!r}: "
                         f"{one_line(e)}") from None
    total = count.selectable(settings.activations)
    if total == 0:
        applied = sorted({row.activation for row in count.other})
        raise UsageError(
            f"model {model.name!r} applies no {'/'.join(settings.activations)}"
            f"; --activations among the ones it applies: "
            f"{', '.join(applied) or 'none'}")
    try:
        return parse_budget(settings.budget, total=total), total
    except ValueError as e:
        raise UsageError(f"--budget: {e}") from None


def prepare(settings):
    """Every check that needs no training (teacher file, settings against
    the run folder, data, budget against the model), then the run folder is
    claimed; ``UsageError`` on bad input."""
    s = settings
    keras.utils.set_random_seed(s.seed)
    parallel = distribution(s)
    with in_scope(parallel):
        given = load_teacher_file(s.teacher) if teacher_is_file(s) else None
    # A built-in model is named after its --model key.
    folder = RunFolder(s.out, check_run_name(
        s.run_name or s.default_run_name(given.name if given else s.model)))
    folder.check_settings(s.training_key())
    data = load_run_data(s)
    with in_scope(parallel):
        model = given or build_model(s, data.info)
    budget, total = check_model(model, data.info, s)
    if tuner_role() != "worker":  # the chief holds the run folder
        folder.claim(s.training_key(), s.wait)
    return Recipe(Run(s, data, folder, parallel), model, budget, total)


# ------------------------------------------------------------------ stages


def _method_options(run):
    """Arguments of the ``--method`` training function."""
    s = run.settings
    epochs = {"search": s.epochs, "identify": s.epochs,
              "finetune": s.finetune_epochs}
    train_ds, test_ds = run.datasets()
    options = dict(
        train_data=train_ds, val_data=test_ds, epochs=s.epochs,
        finetune_epochs=s.finetune_epochs,
        lr=cosine_adam_schedule(
            s.lr, run.steps(max(s.epochs, s.finetune_epochs))),
        metrics=run.metrics(), verbose=run.verbose(),
        callbacks=run.callbacks(epochs))
    if s.method == "autorep":
        options.update(
            activations=s.activations,
            budget_weight=s.budget_weight,
            selector_options=dict(quadratic_decay=s.quadratic_decay,
                                  max_quadratic=s.max_quadratic),
            lr=cosine_adam_schedule(s.lr, run.steps(s.epochs)),
            finetune_lr=cosine_adam_schedule(
                s.lr * AUTOREP_FINETUNE_LR_FRACTION,
                run.steps(max(1, s.finetune_epochs))))
    if s.method != "snl":
        options.update(seed=s.seed)
    return options


def search_stage(recipe, teacher):
    """Remove ReLUs down to the budget with ``--method``; returns the
    student (final masks) and the stage's record."""
    run, s = recipe.run, recipe.run.settings
    allocation = allocation_stage(recipe, teacher)

    def search():
        print(f"Search ({s.method}, allocation {s.allocation}): budget "
              f"{recipe.budget:,} of {recipe.total_relus:,} "
              f"{site_noun(s.activations)}, Adam lr "
              f"{s.lr:g} cosine to {FINAL_LR:g}", flush=True)
        keras.utils.set_random_seed(s.seed)
        return METHODS[s.method](
            teacher, recipe.budget, counts=allocation and allocation["counts"],
            **_method_options(run))

    student = run.folder.trained_model(
        run.folder.stage("search") / "student.keras", search,
        PHASES[s.method], "Search")
    logs = [(phase, run.folder.log(phase)) for phase in PHASES[s.method]]
    history = merge_phase_logs(logs)
    searched = logs[0][1].get("relu_count", [None])[-1]
    landed = count_relus(student).kept
    print(f"Landing: {_count_text(searched)} {site_noun(s.activations)} "
          "after the "
          f"{PHASES[s.method][0]} phase, {landed:,} after landing on the "
          f"budget of {recipe.budget:,} ({landed / max(1, recipe.budget):.1%}"
          f"), then {s.finetune_epochs} fine-tuning epoch(s) with the masks "
          "frozen", flush=True)
    record = dict(
        method=s.method, allocation=allocation or {"method": "free"},
        epochs=s.epochs, finetune_epochs=s.finetune_epochs,
        lr=s.lr, final_lr=FINAL_LR,
        finetune_lr=s.lr * (AUTOREP_FINETUNE_LR_FRACTION
                            if s.method == "autorep" else 1.0),
        budget_weight=s.budget_weight if s.method == "autorep" else None,
        batch_size=s.batch_size,
        relu_count_after_search=searched and int(searched),
        relu_count_landed=landed,
        wall_seconds=sum(v for v in history.get("epoch_seconds", [])
                         if v is not None),
        history=history,
    )
    run.times["allocation"] = (allocation or {}).get("wall_seconds", 0.0)
    run.times["search"] = record["wall_seconds"]
    return student, record


def site_noun(activations):
    """What the budget counts: ``"ReLUs"``, or e.g. ``"silu elements"``."""
    if tuple(activations) == ("relu",):
        return "ReLUs"
    return "/".join(activations) + " elements"


def _count_text(count):
    return "?" if count is None else f"{int(count):,}"


def harden_stage(recipe, student):
    """Hardened model within the budget and its test accuracy."""
    run, budget = recipe.run, recipe.budget
    start = time.perf_counter()
    hardened = harden(student, budget)
    count = count_relus(hardened)
    if count.kept > budget:
        raise AssertionError(
            f"hardened model keeps {count.kept:,} ReLUs, above the "
            f"budget {budget:,}")
    replacements = None
    if run.settings.protocol:
        hardened, replacements = protocol_replacements(run, hardened)
    accuracy = run.evaluate(hardened)
    run.times["harden_evaluate"] = time.perf_counter() - start
    print(f"Hardened: {count.kept:,} "
          f"{site_noun(run.settings.activations)} (budget {budget:,}), "
          f"test {format_accuracy(accuracy)}", flush=True)
    return hardened, dict(test_accuracy=accuracy, relus=count,
                          replacements=replacements)


def protocol_replacements(run, hardened, images=1000):
    """Degree 1 at the sites where, on a seeded sample of training images,
    it costs no accuracy (``choose_replacements`` under --protocol)."""
    hardened, choices = choose_replacements(
        hardened, run.settings.protocol, *run.sample(images, shuffled=True))
    saved = sum(choice["saved_bytes"] for choice in choices)
    print(f"Protocol {run.settings.protocol}: degree 1 at "
          f"{sum(c['degree'] == 1 for c in choices)} of {len(choices)} "
          f"polynomial sites, {saved / 1e6:,.2f} MB less per inference",
          flush=True)
    return hardened, choices


CALIBRATION_IMAGES = 256  # training images of the sanity check


def check_sane(recipe, teacher, hardened, final):
    """Stop the run (``UnstableModelError``) when the final model gives
    non-finite logits on the test split, or non-finite or exploding logits
    (beyond 100x the teacher's largest) on real training images; with
    ``--allow-unstable`` only warn."""
    run = recipe.run
    non_finite = final["test_accuracy"].get("non_finite", 0)
    images = run.sample(CALIBRATION_IMAGES)[0]
    try:
        if non_finite:
            raise UnstableModelError(
                f"the final model gives non-finite logits on {non_finite:,} "
                "test images")
        check_outputs(hardened, Calibration.from_teacher(teacher, images))
    except UnstableModelError as e:
        if not run.settings.allow_unstable:
            raise UnstableModelError(
                f"{e}; nothing exported (--allow-unstable exports it "
                "anyway)") from None
        print(f"Warning: {e}; exporting it as --allow-unstable asks",
              flush=True)


def export_stage(recipe, teacher, hardened, teacher_record, search_record,
                 final):
    """Check the hardened model, then publish it with report and plots;
    returns the report."""
    check_sane(recipe, teacher, hardened, final)
    s, relus = recipe.run.settings, final["relus"]
    protocol = [s.protocol] if s.protocol else None
    report = dict(
        run_name=recipe.run.folder.name,
        dataset=s.dataset,
        model=recipe.model.name,
        image_size=s.image_size,
        activations=list(s.activations),
        quick=s.quick,
        budget=recipe.budget,
        budget_argument=s.budget,
        total_relus=recipe.total_relus,
        relu_count=relus.kept,
        relus=relus.to_dict(),
        final_test_accuracy=final["test_accuracy"],
        teacher=teacher_record,
        search=search_record,
        pi_cost=cost_report(hardened, teacher, names=protocol).to_dict(),
        pi_replacements=final["replacements"],
    )
    plots = {
        "relus_per_layer.png": lambda path: plot_relus_per_layer(
            relus, path, recipe.budget),
        "training.png": lambda path: plot_history(
            search_record["history"], path, recipe.budget),
    }
    return publish(recipe.run, hardened, report, plots)


def run_recipe(recipe):
    """Run every unfinished stage; returns the report."""

    def stages():
        run = recipe.run
        with run.scope():
            teacher, teacher_record = teacher_stage(recipe)
            student, search_record = search_stage(recipe, teacher)
        teacher, student = run.gathered(teacher), run.gathered(student)
        hardened, final = harden_stage(recipe, student)
        return export_stage(recipe, teacher, hardened, teacher_record,
                            search_record, final)

    return recipe.run.folder.run_once(stages)


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
    noun = site_noun(report.get("activations", ["relu"]))
    print(f"{noun:<16}{kept:,} kept, budget {budget:,}, model "
          f"{total:,} ({kept / max(1, total):.2%})")
    print(f"exported model  {report['export']['dir']}")
    print(f"report          {Path(report['export']['dir']) / 'report.json'}")
