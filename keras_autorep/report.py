"""Print the ReLU table and PI cost report of an exported model.

Usage::

    python -m keras_autorep.report saved_models/<name>/<version>
    python -m keras_autorep.report saved_models/<name>        # highest version
    python -m keras_autorep.report path/to/pi_spec.json [--json]

Works from ``pi_spec.json`` alone: no Keras model is loaded.
"""

import argparse
import json
import sys
from pathlib import Path

from keras_autorep.counting import ReLUCount, SiteCount
from keras_autorep.export.pi_spec import SPEC_FILENAME, read_pi_spec
from keras_autorep.export.saved_model import versions
from keras_autorep.pi.cost import cost_report


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
    rows = tuple(
        SiteCount(
            site["layer"],
            "fused relu" if site["fused"] else site["kind"],
            tuple(site["shape"]),
            site["total"],
            site["kept"],
            site["counted"],
        )
        for site in spec["sites"]
    )
    other = tuple(
        SiteCount(
            entry["layer"],
            entry["kind"],
            tuple(entry["shape"]),
            entry["elements"],
            entry["elements"],
        )
        for entry in spec["other"]
    )
    totals = spec["totals"]
    return ReLUCount(
        totals["relu_total"],
        totals["relu_kept"],
        rows,
        other,
        spec["counting_convention"],
    )


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m keras_autorep.report",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument(
        "path", help="version folder, model folder or pi_spec.json"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the report as JSON"
    )
    args = parser.parse_args(argv)
    try:
        spec_path = find_spec(args.path)
        spec = read_pi_spec(spec_path)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    report = cost_report(spec)
    if args.json:
        data = {"spec": str(spec_path), **report.to_dict()}
        print(json.dumps(data, indent=1))
        return 0
    shape = tuple(spec["input"]["shape"])
    print(f"model {spec['model']!r} ({spec_path})")
    print(
        f"input {spec['input']['name']!r}: {spec['input']['dtype']} "
        f"{spec['input']['layout']} (batch,) + {shape}, scaled by "
        f"{spec['input']['scale']:.6g}"
    )
    print()
    print(spec_count(spec).table())
    print()
    print(report.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
