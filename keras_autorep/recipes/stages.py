"""The stages of a teacher-based method (AutoReP, SNL, SENet).

1. **teacher** (``keras_autorep.recipes.teacher``): the all-ReLU model,
   given, cached or trained;
2. **allocation** (``--allocation``, optional): a per-layer split of the
   budget (``keras_autorep.recipes.allocation``);
3. the method's **training phases** (``Method.phases``: search or
   identification, landing on the budget, fine-tuning), with the method's
   own learning-rate plan; the student is ``<run folder>/search/
   student.keras``;
4. **harden** (never above the budget) and test accuracy (top-1, and
   top-5 with more than 10 classes); with ``--protocol``, degree 1 where
   it costs no accuracy;
5. the sanity check and the export (``reporting``).
"""

import time

import keras

from keras_autorep.budgets import parse_budget
from keras_autorep.costs import FORMS
from keras_autorep.graph import (
    check_rewritable,
    count_relus,
    harden,
    predicted_cost,
)
from keras_autorep.pi import cost_budget
from keras_autorep.recipes.allocation import allocate_stage, search_worker
from keras_autorep.recipes.plots import plot_history
from keras_autorep.recipes.reporting import (
    budget_text,
    check_sane,
    export_report,
    format_accuracy,
    one_line,
)
from keras_autorep.recipes.settings import UsageError
from keras_autorep.recipes.teacher import build_model, teacher_stage
from keras_autorep.training.distribute import in_scope

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


def site_noun(activations):
    """What the budget counts: ``"ReLUs"``, or e.g. ``"silu elements"``."""
    if tuple(activations) == ("relu",):
        return "ReLUs"
    return "/".join(activations) + " elements"


def check_model(model, info, settings, method):
    """``(budget, total)`` of a model that fits the data and can be
    converted, ``total`` counting the elements of every ``--activations``
    site, ``budget`` a ReLU count or a ``CostBudget`` resolved against the
    method's student of the model; ``UsageError`` otherwise."""
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
        if not settings.is_cost:
            return parse_budget(settings.budget, total=total), total
        student = method.student(model, settings.activations,
                                 settings.replacement)
        forms = (FORMS if settings.replacement == "auto"
                 else (settings.replacement,))
        return cost_budget(settings.budget, student, settings.protocol,
                           settings.network_parameters, forms=forms), total
    except (ValueError, RuntimeError) as e:
        raise UsageError(f"--budget: {one_line(e)}") from None


def prepare(run, method, given):
    """The ``Recipe`` fields of a teacher-based run: the model to start
    from (``given``, or ``--model`` built for the data), the budget and the
    model's total; ``UsageError`` when they do not fit."""
    with in_scope(run.distribution):
        model = given or build_model(run.settings, run.info)
    budget, total = check_model(model, run.info, run.settings, method)
    return dict(model=model, budget=budget, total_relus=total)


def search_stage(recipe, teacher):
    """Remove ReLUs down to the budget with the method; returns the
    student (final masks), its ``ReLUCount`` and the stage's record."""
    run, s, method = recipe.run, recipe.run.settings, recipe.method
    allocation = allocate_stage(recipe, teacher)
    plan = run.plan()

    def search():
        print(f"Search ({s.method}, allocation {s.allocation}, "
              f"replacement {s.replacement}): budget "
              f"{budget_text(recipe.budget, site_noun(s.activations))} "
              f"({recipe.total_relus:,} {site_noun(s.activations)} in "
              f"all), {method.optimizer} lr {s.lr:g} cosine-decayed",
              flush=True)
        keras.utils.set_random_seed(s.seed)
        train_ds, test_ds = run.datasets()
        return method.train(
            teacher, recipe.budget, train_ds, test_ds, plan=plan,
            counts=allocation and allocation["counts"],
            metrics=run.metrics(),
            callbacks=run.callbacks(),
            verbose=run.verbose())

    student = run.folder.trained_model(
        run.folder.stage("search") / "student.keras", search,
        method.phases, "Search")
    logs = [(phase, run.folder.log(phase)) for phase in method.phases]
    history = merge_phase_logs(logs)
    searched = logs[0][1].get("relu_count", [None])[-1]
    count = count_relus(student)
    print(f"Landing: {'?' if searched is None else f'{int(searched):,}'} "
          f"{site_noun(s.activations)} after the {method.phases[0]} phase, "
          f"{landed_text(recipe, student, count)} after landing, then "
          f"{s.finetune_epochs} fine-tuning epoch(s) with the masks frozen",
          flush=True)
    record = dict(
        method.record(plan),
        allocation=allocation or {"method": "free"},
        batch_size=s.batch_size,
        relu_count_after_search=searched and int(searched),
        relu_count_landed=count.kept,
        wall_seconds=sum(v for v in history.get("epoch_seconds", [])
                         if v is not None),
        history=history,
    )
    run.times["allocation"] = (allocation or {}).get("wall_seconds", 0.0)
    run.times["search"] = record["wall_seconds"]
    return student, count, record


def landed_text(recipe, model, count):
    """Where ``model`` stands against the budget, in words: its kept
    elements, or its predicted cost."""
    noun = site_noun(recipe.run.settings.activations)
    budget = recipe.budget
    if isinstance(budget, int):
        return (f"{count.kept:,} {noun} ({count.kept / max(1, budget):.1%} "
                f"of the budget {budget:,})")
    cost = predicted_cost(model, budget, count)
    return (f"{count.kept:,} {noun}, {budget.describe(cost)} predicted "
            f"({cost / budget.amount:.1%} of {budget})")


def within_budget(recipe, model, count):
    """Raise ``AssertionError`` unless ``model`` keeps to the budget."""
    budget = recipe.budget
    over = (count.kept > budget if isinstance(budget, int)
            else predicted_cost(model, budget, count) > budget.amount)
    if over:
        raise AssertionError(
            f"hardened model is over the budget: "
            f"{landed_text(recipe, model, count)}")


def harden_stage(recipe, student, student_count):
    """Hardened model within the budget, its count and test accuracy."""
    run, budget = recipe.run, recipe.budget
    start = time.perf_counter()
    hardened = harden(student, budget, count=student_count)
    count = count_relus(hardened)
    within_budget(recipe, hardened, count)
    accuracy = run.evaluate(hardened)
    run.times["harden_evaluate"] = time.perf_counter() - start
    print(f"Hardened: {landed_text(recipe, hardened, count)}, test "
          f"{format_accuracy(accuracy)}", flush=True)
    return hardened, count, accuracy


def run_stages(recipe):
    """Teacher, allocation, training phases, harden, check and export;
    returns the report."""
    run = recipe.run
    with run.scope():
        teacher, teacher_record = teacher_stage(recipe)
        student, student_count, search_record = search_stage(recipe,
                                                             teacher)
    # A copy on one device has the same sites and masks, so the same count.
    teacher, student = run.gathered(teacher), run.gathered(student)
    hardened, count, accuracy = harden_stage(recipe, student, student_count)
    check_sane(run, hardened, accuracy, teacher)
    s = run.settings
    fields = dict(
        summary=(f"{s.method} (allocation "
                 f"{search_record['allocation']['method']}, replacement "
                 f"{s.replacement})"),
        budget_noun=site_noun(s.activations),
        model=recipe.model.name,
        image_size=s.image_size,
        activations=list(s.activations),
        replacement=s.replacement,
        total_relus=recipe.total_relus,
        teacher=teacher_record,
        search=search_record,
    )
    plots = {"training.png": lambda path: plot_history(
        search_record["history"], path, recipe.budget)}
    return export_report(recipe, hardened, count, accuracy, fields, plots,
                         original=teacher)
