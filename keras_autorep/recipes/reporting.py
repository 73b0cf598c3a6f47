"""Evaluation and publishing: test accuracy, the export with its report.

``publish(run, model, report, plots)`` writes a run's version folder in one
atomic step: on the TensorFlow backend everything ``export_all`` writes
plus the PI cost report (``pi_cost.txt``), on another backend only
``model.keras`` (with a notice); then ``report.json`` and the plots, and
the run is marked finished.
"""

import platform
import sys
import time
from pathlib import Path

import keras
import numpy as np

import keras_autorep
from keras_autorep.export import KERAS_FILENAME, export_all, write_version
from keras_autorep.recipes.run_folder import write_json

REPORT_FILENAME = "report.json"


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
        "keras_backend": keras.backend.backend(),
        "tensorflow": used("tensorflow"),
        "jax": used("jax"),
        "numpy": np.__version__,
        "keras_autorep": keras_autorep.__version__,
    }


def publish(run, model, report, plots):
    """Export ``model`` to the run's next version folder with its report.

    Args:
        run: the ``Run``.
        model: the inference model to export.
        report: the run's report fields; the fields every run has (library
            versions, exported files, settings, export wall time) are added.
        plots: ``{filename: draw(path)}`` PNGs to write beside the model.

    Returns:
        The report as written to ``report.json``.
    """
    from keras_autorep.pi.exported import write_cost_file

    start = time.perf_counter()
    backend = keras.backend.backend()
    written = {}

    def extras(folder, version_dir):
        if backend == "tensorflow":
            protocol = getattr(run.settings, "protocol", None)
            write_cost_file(folder, names=[protocol] if protocol else None)
        for filename, draw in plots.items():
            draw(folder / filename)
        run.times["export"] = time.perf_counter() - start
        written.update(report, **_run_fields(run, version_dir, folder))
        write_json(folder / REPORT_FILENAME, written)
        run.folder.mark_finished(version_dir)

    if backend == "tensorflow":
        export_dir = export_all(model, run.out, run.folder.name,
                                extras=extras)
    else:
        export_dir = write_version(
            run.out, run.folder.name, None, False,
            lambda folder, version_dir: (
                model.save(folder / KERAS_FILENAME),
                extras(folder, version_dir)))
        print(f"SavedModel and ONNX export skipped: they need the "
              f"TensorFlow backend, Keras runs on {backend}. Saved "
              f"{export_dir / KERAS_FILENAME}; export it later with "
              "KERAS_BACKEND=tensorflow and "
              "keras_autorep.export.export_all.", flush=True)
    return written


def _run_fields(run, version_dir, folder):
    wall = dict(run.times)
    return dict(
        wall_seconds={**wall, "total": sum(wall.values())},
        versions=library_versions(),
        export=dict(dir=str(Path(version_dir).resolve()),
                    files=sorted([p.name for p in folder.iterdir()]
                                 + [REPORT_FILENAME])),
        settings=run.settings.training_key(),
    )
