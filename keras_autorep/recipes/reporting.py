"""Evaluation, the sanity check, and the export with its report.

``export_report(recipe, model, count, accuracy, fields, plots)`` is the
last stage of every recipe run: the report's common fields with the
method family's ``fields``, then ``publish``: one atomic version folder
with, on the TensorFlow backend, everything ``export_all`` writes plus the
PI cost report (``pi_cost.txt``), on another backend only ``model.keras``
(with a notice); then ``report.json`` and the plots, and the run is marked
finished. The sanity check has two parts: ``check_sane`` on the Keras
model before the export, ``check_fixed_point`` on the written ONNX graph
before it is published.
"""

import dataclasses
import platform
import sys
import time
from pathlib import Path

import keras
import numpy as np

import keras_autorep
from keras_autorep.backends import current
from keras_autorep.export import (
    KERAS_FILENAME,
    ONNX_FILENAME,
    Calibration,
    UnstableModelError,
    check_outputs,
    export_all,
    write_version,
)
from keras_autorep.graph import predicted_cost
from keras_autorep.pi import cost_report, measure
from keras_autorep.pi.exported import write_cost_file
from keras_autorep.pi.fixed_point import fixed_point_check
from keras_autorep.recipes.plots import plot_relus_per_layer
from keras_autorep.recipes.run_folder import write_json

REPORT_FILENAME = "report.json"
CALIBRATION_IMAGES = 256  # training images of the sanity check
MEASURED_IMAGES = 4  # test images of the two-party run of a cost budget


def budget_text(budget, noun="ReLUs"):
    """A ReLU count (``"12,900 ReLUs"``) or a ``CostBudget`` (``"3.70 MB
    under spu-cheetah"``) in words."""
    if isinstance(budget, int):
        return f"{budget:,} {noun}"
    return str(budget)


def budget_fields(budget, model, count):
    """The report's budget fields: ``budget`` (ReLUs, bytes or ms) and
    ``budget_unit``; for a ``CostBudget`` also ``pi_budget``: what the
    final model is predicted to cost against it."""
    if isinstance(budget, int):
        return dict(budget=budget, budget_unit="relus")
    return dict(
        budget=budget.amount, budget_unit=budget.unit,
        pi_budget=dict(
            protocol=budget.protocol, metric=budget.metric,
            network=dataclasses.asdict(budget.network),
            amount=budget.amount,
            predicted=predicted_cost(model, budget, count),
            fixed=budget.fixed, all_relu=budget.all_relu()))


def evaluate(model, dataset, labels, top5):
    """Test accuracy of a logits model: ``{"top1": ..., ["top5": ...]}``.

    An example whose logits are not all finite (a polynomial network can
    overflow) counts as wrong; their number is added as ``"non_finite"``
    when there are any.
    """
    logits = model.predict(dataset, verbose=0)
    finite_values = np.isfinite(logits)
    finite = np.all(finite_values, axis=-1)
    logits = np.where(finite_values, logits, -np.inf)
    correct = (np.argmax(logits, -1) == labels) & finite
    result = {"top1": float(np.mean(correct))}
    if top5:
        best5 = np.argsort(-logits, axis=-1)[:, :5]
        result["top5"] = float(
            np.mean(np.any(best5 == labels[:, None], -1) & finite))
    if not finite.all():
        result["non_finite"] = int(np.sum(~finite))
    return result


def format_accuracy(result):
    """``"top-1 54.15%[, top-5 ...][, N non-finite outputs]"`` from an
    ``evaluate`` result."""
    text = f"top-1 {result['top1']:.2%}"
    if "top5" in result:
        text += f", top-5 {result['top5']:.2%}"
    if result.get("non_finite"):
        text += (f" ({result['non_finite']:,} examples with non-finite "
                 "logits, counted wrong)")
    return text


def one_line(error):
    """An error message with its whitespace and newlines collapsed."""
    return " ".join(str(error).split())


def library_versions():
    """Versions of Python and the libraries the run used (``None``: unused)."""

    def used(name):
        module = sys.modules.get(name)
        return getattr(module, "__version__", None)

    return {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "keras_backend": current().name,
        "tensorflow": used("tensorflow"),
        "jax": used("jax"),
        "numpy": np.__version__,
        "keras_autorep": keras_autorep.__version__,
    }


def check_sane(run, model, accuracy, teacher=None):
    """Stop the run (``UnstableModelError``) when the final model gives
    non-finite logits on the test split, or non-finite or exploding logits
    (beyond 100x the teacher's largest, where there is a teacher) on real
    training images; with ``--allow-unstable`` only warn."""
    non_finite = accuracy.get("non_finite", 0)
    images = run.sample(CALIBRATION_IMAGES)[0]
    try:
        if non_finite:
            raise UnstableModelError(
                f"the final model gives non-finite logits on {non_finite:,} "
                "test images")
        check_outputs(model, Calibration(images, np.inf) if teacher is None
                      else Calibration.from_teacher(teacher, images))
    except UnstableModelError as e:
        refuse(run, e)


def refuse(run, error):
    """Stop the run with ``error`` (``UnstableModelError``, nothing
    exported) or, with ``--allow-unstable``, only warn."""
    if not run.settings.allow_unstable:
        raise UnstableModelError(
            f"{error}; nothing exported (--allow-unstable exports it "
            "anyway)") from None
    print(f"Warning: {error}; exporting it as --allow-unstable asks",
          flush=True)


def check_fixed_point(run, folder):
    """The sanity check's fixed-point part: the written ONNX graph in each
    runtime's format (``keras_autorep.pi.fixed_point``) on the
    calibration images, as they are and 2x brighter; a line per format.
    A graph that does not fit the ring with margin on the images as they
    are is refused like a non-finite model; one that fits them but not
    the brighter ones gets a warning. Returns the figures
    (``fixed_point_check``)."""
    images = run.sample(CALIBRATION_IMAGES)[0] * 255.0
    result = fixed_point_check(folder / ONNX_FILENAME, images)
    for key, entry in result.items():
        scales = entry["scales"]
        largest = ", ".join(
            f"{row['largest_value']:.3g} / {row['largest_product']:.3g} at "
            f"{scale}" for scale, row in scales.items())
        headroom = min(row["headroom_bits"] for row in scales.values())
        verdict = "fits" if entry["fits"] else "does NOT fit"
        print(f"Fixed point, {entry['format']}: largest value / product "
              f"before truncation {largest} (bounds "
              f"{entry['value_bound']:.3g} / {entry['product_bound']:.3g}): "
              f"{headroom:.1f} bits of headroom, {verdict} (margin "
              f"{entry['margin_bits']} bits)", flush=True)
    failing = [(key, scale, row) for key, entry in result.items()
               for scale, row in entry["scales"].items() if not row["fits"]]
    for key, scale, row in failing:
        problem = (
            f"the exported graph does not fit {key} fixed point at {scale} "
            f"calibration images: {row['headroom_bits']:.1f} bits of "
            f"headroom (at least {result[key]['margin_bits']} needed; "
            f"largest product {row['largest_product']:.3g} at "
            f"{row['largest_product_node']}, value "
            f"{row['largest_value']:.3g} at {row['largest_value_node']}, "
            f"{row['finite']:.1%} of the logits finite)")
        if scale == "x1":
            refuse(run, UnstableModelError(problem))
        else:
            print(f"Warning: {problem}: inputs this much brighter than the "
                  "training images would compute wrong answers in that "
                  "runtime (a larger --range-penalty trades top-1 for "
                  "range)", flush=True)
    return result


def export_report(recipe, model, count, accuracy, fields, plots,
                  original=None):
    """Publish the final ``model`` with its report; returns the report.

    Args:
        recipe: the ``Recipe``.
        model: the final inference model.
        count: its ``ReLUCount``.
        accuracy: its ``evaluate`` result on the test split.
        fields: the method family's report fields.
        plots: the family's ``{filename: draw(path)}`` PNGs (the ReLUs per
            layer are added).
        original: the model the PI cost compares with (the teacher), or
            ``None`` for the model with every site a ReLU.
    """
    run, s = recipe.run, recipe.run.settings
    report = dict(
        run_name=run.folder.name, dataset=s.dataset, method=s.method,
        quick=s.quick, budget_argument=s.budget,
        **budget_fields(recipe.budget, model, count),
        relu_count=count.kept, relus=count.to_dict(),
        final_test_accuracy=accuracy, **fields)
    relu_budget = recipe.budget if isinstance(recipe.budget, int) else None
    plots = {"relus_per_layer.png": lambda path: plot_relus_per_layer(
        count, path, relu_budget), **plots}
    return publish(run, model, count, report, plots, original)


def publish(run, model, count, report, plots, original=None):
    """Export ``model`` (its ``ReLUCount`` ``count``) to the run's next
    version folder with its report, the PI cost against ``original`` and
    the ``plots``; returns the report as written to ``report.json``."""
    start = time.perf_counter()
    backend = current()
    protocol = run.settings.protocol
    names = [protocol] if protocol else None
    written = {}

    def extras(folder, version_dir):
        if backend.exports:
            report["fixed_point"] = check_fixed_point(run, folder)
        if backend.exports and "pi_budget" in report:
            report["pi_measured"] = measure_budget(run, folder)
        if backend.exports:  # price the written graph
            report["pi_cost"] = cost_report(folder, original,
                                            names=names).to_dict()
            write_cost_file(folder, names=names)
        else:
            report["pi_cost"] = cost_report(model, original, names=names,
                                            count=count).to_dict()
        for filename, draw in plots.items():
            draw(folder / filename)
        run.times["export"] = time.perf_counter() - start
        written.update(report, **_run_fields(run, version_dir, folder))
        write_json(folder / REPORT_FILENAME, written)
        run.folder.mark_finished(version_dir)

    if backend.exports:
        export_dir = export_all(model, run.out, run.folder.name,
                                extras=extras, count=count)
    else:
        export_dir = write_version(
            run.out, run.folder.name, None, False,
            lambda folder, version_dir: (
                model.save(folder / KERAS_FILENAME),
                extras(folder, version_dir)))
        print(f"SavedModel and ONNX export (and the fixed-point check of "
              f"the ONNX graph) skipped: they need the "
              f"TensorFlow backend, Keras runs on {backend.name}. Saved "
              f"{export_dir / KERAS_FILENAME}; export it later with "
              "KERAS_BACKEND=tensorflow and "
              "keras_autorep.export.export_all.", flush=True)
    return written


def measure_budget(run, folder):
    """The export in ``folder`` measured in the runtime of the budget's
    protocol on ``MEASURED_IMAGES`` test images (``keras_autorep.pi
    .measure``, also written to ``pi_measured.json``), or why not."""
    protocol = run.settings.protocol
    print(f"Measuring the export in a real {protocol} run on "
          f"{MEASURED_IMAGES} test images", flush=True)
    try:
        entry = measure(folder, protocol, run.test_images(MEASURED_IMAGES))
    except (OSError, RuntimeError) as e:
        print(f"Not measured: {one_line(e)}", flush=True)
        return {"runtime": protocol, "skipped": one_line(e)}
    print(f"Measured: {entry['bytes'] / 1e6:,.2f} MB, {entry['rounds']:,} "
          f"rounds per inference", flush=True)
    return {"runtime": protocol, **entry}


def _run_fields(run, version_dir, folder):
    wall = dict(run.times)
    return dict(
        # Image files of a streamed tree left out: they do not decode.
        unreadable_images=dict(
            count=len(run.info.unreadable),
            files=[dict(file=file, reason=reason)
                   for file, reason in run.info.unreadable]),
        wall_seconds={**wall, "total": sum(wall.values())},
        versions=library_versions(),
        export=dict(dir=str(Path(version_dir).resolve()),
                    files=sorted([p.name for p in folder.iterdir()]
                                 + [REPORT_FILENAME])),
        settings=run.settings.training_key(),
    )
