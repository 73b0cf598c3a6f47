"""keras.applications models measured in the two-party runtimes against
the calibrated prediction: the "PI-ready models" table of the README.

    python benchmarks/pi_models.py [--models ResNet50 MobileNetV2 ...]
        [--runtimes crypten,spu-semi2k,spu-cheetah] [--budget 10%]
        [--images 1] [--out runs/pi_models] [--data-dir PATH]

Each model (``weights=None``, 32x32, 10 classes, the activations
``benchmarks/applications.py`` converts) is converted, hardened to
``--budget`` of its sites' elements and exported (``export_all``, once:
a later run reuses the export and the measurements already in its
``pi_measured.json``); then each runtime runs ``--images`` real CIFAR-10
test images through its ``model.onnx`` (``keras_autorep.pi.measure``;
figures are means over the images: CHEETAH's OT buffer refills fall on
whichever inference empties a buffer, so its rows need several images to
show the amortised refills the prediction holds).
Prints per model and runtime the measured and predicted bytes and rounds,
top-1 agreement and the largest logit error against the plaintext graph,
and writes them to ``<out>/pi_models.json``. On 2 cores, one image: about
2 hours for the five default models (ResNet50 and DenseNet121 take the
longest).
"""

import argparse
import json
import os
import sys
from pathlib import Path

import keras
import numpy as np

from applications import MODELS
from keras_autorep.data import load_dataset
from keras_autorep.export import export_all
from keras_autorep.graph import harden, replace_relus
from keras_autorep.pi import measure, onnx_workload, predict, read_measured
from keras_autorep.pi.runtimes import RUNTIMES

DEFAULT_MODELS = ("ResNet50", "MobileNetV2", "MobileNetV3Small",
                  "EfficientNetB0", "DenseNet121")
DATA_DIR = os.environ.get("KERAS_AUTOREP_DATA", "../shared/data")


def exported(name, budget, out):
    """The version folder of ``name`` hardened to ``budget`` (exported
    once)."""
    folder = Path(out) / f"{name.lower()}_{budget.rstrip('%')}pct"
    version = folder / "1"
    if not (version / "model.onnx").exists():
        keras.utils.set_random_seed(0)
        model = getattr(keras.applications, name)(
            weights=None, input_shape=(32, 32, 3), classes=10,
            classifier_activation=None)
        hardened = harden(replace_relus(model, activations=MODELS[name]),
                          budget=budget)
        export_all(hardened, out, folder.name, version=1, overwrite=True)
    return version


def row(name, runtime, version, images):
    """Measured (reused when already measured on as many images) and
    predicted figures of one model in one runtime."""
    entry = read_measured(version).get(runtime)
    if entry is None or entry["images"] != len(images):
        entry = measure(version, runtime, images)
    predicted = predict(onnx_workload(version / "model.onnx"), runtime)
    return dict(model=name, runtime=runtime, bytes=entry["bytes"],
                predicted_bytes=predicted.bytes, rounds=entry["rounds"],
                predicted_rounds=predicted.rounds,
                top1_agreement=entry["top1_agreement"],
                max_abs_error=entry["max_abs_error"],
                online_seconds=entry["online_seconds"])


def print_row(r):
    def off(predicted, measured):
        return f"{predicted / measured - 1:+.1%}"

    print(f"| {r['model']} | {r['runtime']} | {r['bytes'] / 1e6:,.2f} | "
          f"{r['predicted_bytes'] / 1e6:,.2f} "
          f"({off(r['predicted_bytes'], r['bytes'])}) | {r['rounds']:,} | "
          f"{r['predicted_rounds']:,.0f} "
          f"({off(r['predicted_rounds'], r['rounds'])}) | "
          f"{r['top1_agreement']:.0%} | {r['max_abs_error']:.1e} | "
          f"{r['online_seconds']:,.1f} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS),
                        default=list(DEFAULT_MODELS))
    parser.add_argument("--runtimes", default=",".join(sorted(RUNTIMES)))
    parser.add_argument("--budget", default="10%")
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--out", default="runs/pi_models")
    parser.add_argument("--data-dir", default=str(
        Path(DATA_DIR) / "cifar10-images.tar.gz"))
    args = parser.parse_args(argv)
    _, (x_test, _), _ = load_dataset(
        "cifar10", data_dir=args.data_dir,
        subset=(args.images, args.images), verbose=0)
    images = np.asarray(x_test[:args.images], "float32")
    print("| model | runtime | MB measured | MB predicted | rounds measured "
          "| rounds predicted | top-1 agreement | max abs error | online s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for name in args.models:
        version = exported(name, args.budget, args.out)
        for runtime in args.runtimes.split(","):
            rows.append(row(name, runtime, version, images))
            print_row(rows[-1])
    path = Path(args.out) / "pi_models.json"
    path.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
