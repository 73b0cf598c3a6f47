"""A recipe run: prepared once, then its stages, resumed where they stopped.

``python recipes/cifar10.py --budget 12.9k`` resolves its ``Settings``,
then ``prepare(settings)`` checks everything that needs no training and
``run_recipe(recipe)`` runs the method's stages (``keras_autorep.methods
.METHODS``), each skipped on a rerun once it has finished:

* a teacher-based method (AutoReP, SNL, SENet; ``stages``): the all-ReLU
  **teacher** (``teacher``), an optional per-layer **allocation**
  (``allocation``), the method's training phases (search, landing on the
  budget, fine-tuning), then **harden** and evaluate;
* CryptoNAS (``architecture``): the architecture **search**, then the best
  candidate **trained** from scratch and evaluated;

then, for every method, the **sanity check** and the **export** to
``<out>/<run name>/<version>/`` with ``report.json`` and plots
(``reporting.publish``).
"""

import dataclasses
from pathlib import Path

import keras

from keras_autorep.adapters.keras_tuner_roles import tuner_role
from keras_autorep.methods import METHODS, Method
from keras_autorep.recipes import architecture, stages
from keras_autorep.recipes.reporting import format_accuracy
from keras_autorep.recipes.run import Run, distribution, load_run_data
from keras_autorep.recipes.run_folder import RunFolder
from keras_autorep.recipes.settings import check_run_name
from keras_autorep.recipes.teacher import load_teacher_file, teacher_is_file
from keras_autorep.training.distribute import in_scope


@dataclasses.dataclass
class Recipe:
    """A prepared recipe run.

    Attributes:
        run: the ``Run`` (settings, data, run folder, fit loop).
        method: the ``Method`` it runs.
        budget: the ReLU budget, resolved.
        total_relus: the model's selectable elements (teacher-based
            methods; ``None`` for CryptoNAS).
        model: teacher-based methods: the given teacher, or the freshly
            initialised one to train.
        hypermodel: CryptoNAS: the search space of the budget.
        search_split: CryptoNAS: ``(fit, validation)`` of the training
            images the search validates on.
    """

    run: Run
    method: Method
    budget: int
    total_relus: int = None
    model: keras.Model = None
    hypermodel: object = None
    search_split: tuple = None


def prepare(settings):
    """Every check that needs no training (teacher file, settings against
    the run folder, data, budget against the model), then the run folder is
    claimed; ``UsageError`` on bad input."""
    s = settings
    method = METHODS[s.method]
    keras.utils.set_random_seed(s.seed)
    parallel = distribution(s)
    given = None
    if method.uses_teacher and teacher_is_file(s):
        with in_scope(parallel):
            given = load_teacher_file(s.teacher)
    # A built-in model is named after its --model key.
    folder = RunFolder(s.out, check_run_name(
        s.run_name or s.default_run_name(given.name if given else s.model)))
    folder.check_settings(s.training_key())
    run = Run(s, load_run_data(s), folder, parallel)
    family = stages if method.uses_teacher else architecture
    recipe = Recipe(run, method, **family.prepare(run, method, given))
    if tuner_role() != "worker":  # the chief holds the run folder
        folder.claim(s.training_key(), s.wait)
    return recipe


def search_worker(recipe):
    """A keras-tuner worker's share of the run's search (a tuned
    allocation, or CryptoNAS's architecture search); its chief finishes
    the run."""
    family = stages if recipe.method.uses_teacher else architecture
    with recipe.run.scope():
        family.search_worker(recipe)


def run_recipe(recipe):
    """Run every unfinished stage; returns the report."""
    family = stages if recipe.method.uses_teacher else architecture
    return recipe.run.folder.run_once(lambda: family.run_stages(recipe))


def print_summary(report):
    """The closing lines of a run: accuracy, ReLUs against budget, paths."""
    print()
    print(f"== {report['run_name']}: {report['model']} on "
          f"{report['dataset']}, {report['summary']} ==")
    teacher = report.get("teacher")
    against = (f" (teacher {format_accuracy(teacher['test_accuracy'])})"
               if teacher else "")
    print(f"test accuracy   {format_accuracy(report['final_test_accuracy'])}"
          f"{against}")
    kept, total = report["relu_count"], report["relus"]["total"]
    noun = report["budget_noun"]
    if report["budget_unit"] == "relus":
        print(f"{noun:<16}{kept:,} kept, budget {report['budget']:,}, "
              f"model {total:,} ({kept / max(1, total):.2%})")
    else:
        priced = report["pi_budget"]
        scale, unit = ((1e6, "MB") if report["budget_unit"] == "bytes"
                       else (1.0, "ms"))
        measured = report.get("pi_measured", {})
        figure = (f"measured {measured['bytes'] / 1e6:,.2f} MB"
                  if "bytes" in measured else "not measured")
        print(f"{noun:<16}{kept:,} kept of {total:,}")
        print(f"{'PI cost':<16}{priced['predicted'] / scale:,.2f} {unit} "
              f"predicted ({figure}), budget "
              f"{priced['amount'] / scale:,.2f} {unit} under "
              f"{priced['protocol']}")
    print(f"exported model  {report['export']['dir']}")
    print(f"report          {Path(report['export']['dir']) / 'report.json'}")
