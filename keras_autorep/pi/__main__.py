"""Command line of ``keras_autorep.pi``.

Usage::

    python -m keras_autorep.pi cost saved_models/<name>[/<version>]
        [--protocol NAME] [--rtt-ms 1] [--bandwidth-mbps 1000]
        [--json] [--write]
    python -m keras_autorep.pi measure saved_models/<name>/<version>
        [--runtime crypten|spu-semi2k|spu-cheetah]
        [--baseline TEACHER_EXPORT] [--images N] [--data-dir PATH]
        [--envs DIR]
    python -m keras_autorep.pi setup [--envs DIR] [--runtime crypten|spu|all]

``cost`` prints the ReLU table and the PI cost report of an export from its
files (``--write`` also saves it as ``pi_cost.txt``). ``measure`` runs
``N`` real test images through a two-party runtime, writes
``pi_measured.json`` beside the model and prints the entry. ``setup``
builds the runtimes' virtualenvs; ``--envs`` overrides the folder they live
in (see ``envs.envs_folder``). ``keras-autorep-pi`` is the same command.

``measure`` works in a scratch folder of the temporary folder
(``scratch``): SIGTERM or SIGINT removes it and exits with 128 + the
signal's number; after a SIGKILL the next measurement removes it.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from keras_autorep.costs import Network
from keras_autorep.pi.envs import ENVIRONMENTS, build_env, envs_folder
from keras_autorep.pi.exported import cost_text, find_spec, write_cost_file
from keras_autorep.pi.report import cost_report
from keras_autorep.pi.runtimes import RUNTIMES
from keras_autorep.training.preemption import Preempted, stop_on_signals

DEFAULT_ARCHIVE = "cifar10-images.tar.gz"


def default_data_dir():
    base = os.environ.get("KERAS_AUTOREP_DATA", "../shared/data")
    return str(Path(base) / DEFAULT_ARCHIVE)


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
    cost.add_argument("--protocol", action="append", choices=sorted(RUNTIMES),
                      help="price only this protocol (repeatable)")
    cost.add_argument("--rtt-ms", type=float, default=Network.rtt_ms,
                      help="network round-trip time of the latency (ms)")
    cost.add_argument("--bandwidth-mbps", type=float,
                      default=Network.bandwidth_mbps,
                      help="network bandwidth of the latency (Mbit/s)")
    cost.add_argument(
        "--json", action="store_true", help="print the report as JSON"
    )
    cost.add_argument(
        "--write", action="store_true",
        help="also write pi_cost.txt beside the spec",
    )
    measure = commands.add_parser(
        "measure", help="measure a real two-party inference of an export"
    )
    measure.add_argument("path", help="version folder or model folder")
    measure.add_argument("--runtime", choices=sorted(RUNTIMES),
                         default="crypten")
    measure.add_argument("--baseline", help="export to compare with "
                         "(e.g. the all-ReLU teacher's)")
    measure.add_argument("--images", type=int, default=4,
                         help="number of test images (default 4)")
    measure.add_argument("--data-dir", default=None,
                         help="dataset folder or archive of the images "
                         f"(default $KERAS_AUTOREP_DATA/{DEFAULT_ARCHIVE} or "
                         f"../shared/data/{DEFAULT_ARCHIVE})")
    measure.add_argument("--dataset", default="cifar10")
    setup = commands.add_parser(
        "setup", help="build the two-party runtimes' virtualenvs"
    )
    setup.add_argument("--runtime", choices=[*sorted(ENVIRONMENTS), "all"],
                       default="all", help="which virtualenv (default all)")
    for command in (measure, setup):
        command.add_argument(
            "--envs", default=None,
            help="folder of the runtime virtualenvs (default "
            "$KERAS_AUTOREP_PI_ENVS, else the source checkout when it "
            "holds them, else $XDG_DATA_HOME/keras_autorep/pi-envs)")
    return parser


def test_images(dataset, data_dir, count, shape):
    """``count`` test images (raw pixels, float32) of the dataset."""
    from keras_autorep.data import load_dataset

    _, (x_test, _), _ = load_dataset(
        dataset, data_dir=data_dir, subset=(count, count), verbose=0
    )
    if tuple(x_test.shape[1:]) != tuple(shape):
        raise ValueError(
            f"{dataset} images are {x_test.shape[1:]}, the model takes "
            f"{tuple(shape)}"
        )
    return x_test[:count].astype("float32")


def run_measure(args):
    from keras_autorep.export import read_pi_spec
    from keras_autorep.pi.measure import measure

    if args.images < 1:
        raise ValueError(f"--images must be >= 1, got {args.images}")
    version = find_spec(args.path).parent
    shape = read_pi_spec(version)["input"]["shape"]
    images = test_images(args.dataset, args.data_dir or default_data_dir(),
                         args.images, shape)
    baseline = find_spec(args.baseline).parent if args.baseline else None
    entry = measure(version, args.runtime, images, baseline, envs=args.envs)
    print(json.dumps({"runtime": args.runtime, **entry}, indent=1))
    print(f"wrote {version / 'pi_measured.json'}")


def run_setup(args):
    names = sorted(ENVIRONMENTS) if args.runtime == "all" else [args.runtime]
    for name in names:
        venv = envs_folder(args.envs) / ENVIRONMENTS[name].venv
        print(f"building the {name} runtime in {venv}", flush=True)
        build_env(name, args.envs)
    print(f"runtimes ready in {envs_folder(args.envs)}")


def run_cost(args):
    spec_path = find_spec(args.path)
    network = Network(args.rtt_ms, args.bandwidth_mbps)
    if args.json:
        report = cost_report(spec_path, network=network, names=args.protocol)
        print(json.dumps({"spec": str(spec_path), **report.to_dict()},
                         indent=1))
    else:
        print(cost_text(spec_path, network, args.protocol))
    if args.write:
        write_cost_file(spec_path.parent, network, args.protocol)


COMMANDS = {"cost": run_cost, "measure": run_measure, "setup": run_setup}


def main(argv=None):
    """Command-line entry point; returns the exit status (SIGTERM and
    SIGINT: 128 + the signal's number, scratch folders removed)."""
    args = build_parser().parse_args(argv)
    with stop_on_signals():
        try:
            COMMANDS[args.command](args)
        except (OSError, ValueError, RuntimeError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        except Preempted as stop:
            print(f"error: {stop.message()}", file=sys.stderr)
            return stop.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main())
