"""The PI cost of an exported model, read from its files (``pi_spec.json``,
``model.onnx``, ``pi_measured.json``; no Keras model is loaded)."""

from pathlib import Path

from keras_autorep.export import (
    SPEC_FILENAME,
    count_from_spec,
    read_pi_spec,
    versions,
)
from keras_autorep.pi.report import cost_report

COST_FILENAME = "pi_cost.txt"


def find_spec(path):
    """The ``pi_spec.json`` for a spec file, a version or a model folder."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / SPEC_FILENAME).is_file():
        return path / SPEC_FILENAME
    for version in reversed(versions(path)):
        candidate = path / str(version) / SPEC_FILENAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no {SPEC_FILENAME} in {path} or in its version folders"
    )


def cost_text(spec_path, network=None, names=None):
    """The model line, input line, ReLU table and cost report of the
    export whose spec is ``spec_path``."""
    spec = read_pi_spec(spec_path)
    shape = tuple(spec["input"]["shape"])
    return "\n".join([
        f"model {spec['model']!r} ({spec_path})",
        f"input {spec['input']['name']!r}: {spec['input']['dtype']} "
        f"{spec['input']['layout']} (batch,) + {shape}, scaled by "
        f"{spec['input']['scale']:.6g}",
        "",
        count_from_spec(spec).table(),
        "",
        cost_report(spec_path, network=network, names=names).text(),
    ])


def write_cost_file(folder, network=None, names=None):
    """Write ``pi_cost.txt`` (the cost report) beside the spec in
    ``folder``; returns its path."""
    path = Path(folder) / COST_FILENAME
    report = cost_report(folder, network=network, names=names)
    path.write_text(report.text() + "\n")
    return path
