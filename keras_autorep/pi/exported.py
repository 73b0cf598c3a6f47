"""The PI cost of an exported model, read from its ``pi_spec.json`` alone
(no Keras model is loaded)."""

from pathlib import Path

from keras_autorep.export import SPEC_FILENAME, read_pi_spec, versions
from keras_autorep.graph.counting import ReLUCount, SiteCount
from keras_autorep.pi.cost import cost_report

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


def spec_count(spec):
    """The ``ReLUCount`` a PI spec was written from (without a model)."""
    rows = [
        SiteCount(
            site["layer"],
            "fused relu" if site["fused"] else site["kind"],
            tuple(site["shape"]),
            site["total"],
            site["kept"],
            site["fused"],
        )
        for site in spec["sites"]
    ] + [
        SiteCount(entry["layer"], entry["kind"], tuple(entry["shape"]),
                  entry["comparisons"], entry["comparisons"],
                  comparisons=entry["not_relu"])
        for entry in spec["traced"]
    ]
    other = tuple(
        SiteCount(entry["layer"], entry["kind"], tuple(entry["shape"]),
                  entry["elements"], entry["elements"],
                  comparisons=entry["comparisons"])
        for entry in spec["other"]
    )
    totals = spec["totals"]
    return ReLUCount(
        totals["relu_total"],
        totals["relu_kept"],
        tuple(rows),
        other,
        spec["counting_convention"],
        totals["max_comparisons"],
        totals["other_comparisons"],
    )


def cost_text(spec, spec_path=None):
    """The model line, input line, ReLU table and cost report of a spec."""
    shape = tuple(spec["input"]["shape"])
    source = f" ({spec_path})" if spec_path else ""
    return "\n".join([
        f"model {spec['model']!r}{source}",
        f"input {spec['input']['name']!r}: {spec['input']['dtype']} "
        f"{spec['input']['layout']} (batch,) + {shape}, scaled by "
        f"{spec['input']['scale']:.6g}",
        "",
        spec_count(spec).table(),
        "",
        cost_report(spec).text(),
    ])


def write_cost_file(folder):
    """Write ``pi_cost.txt`` (the cost report) beside the spec in
    ``folder``; returns its path."""
    path = Path(folder) / COST_FILENAME
    path.write_text(cost_report(read_pi_spec(folder)).text() + "\n")
    return path
