"""Command line of ``keras_autorep.pi``.

Usage::

    python -m keras_autorep.pi cost saved_models/<name>/<version>
    python -m keras_autorep.pi cost saved_models/<name>   # highest version
    python -m keras_autorep.pi cost path/to/pi_spec.json [--json] [--write]

``cost`` prints the ReLU table and the PI cost report of an exported model
from its ``pi_spec.json`` alone (no Keras model is loaded); ``--write``
also saves the report as ``pi_cost.txt`` beside the spec.
"""

import argparse
import json
import sys

from keras_autorep.export import read_pi_spec
from keras_autorep.pi.cost import cost_report
from keras_autorep.pi.exported import cost_text, find_spec, write_cost_file


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m keras_autorep.pi",
        description="Private-inference cost of exported models.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    cost = commands.add_parser(
        "cost", help="print the ReLU table and PI cost report of an export"
    )
    cost.add_argument(
        "path", help="version folder, model folder or pi_spec.json"
    )
    cost.add_argument(
        "--json", action="store_true", help="print the report as JSON"
    )
    cost.add_argument(
        "--write", action="store_true",
        help="also write pi_cost.txt beside the spec",
    )
    return parser


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        spec_path = find_spec(args.path)
        spec = read_pi_spec(spec_path)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        data = {"spec": str(spec_path), **cost_report(spec).to_dict()}
        print(json.dumps(data, indent=1))
    else:
        print(cost_text(spec, spec_path))
    if args.write:
        write_cost_file(spec_path.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
