"""keras.applications models through the library: the table of the README.

For each model (``weights=None``, 32x32, 10 classes) with the activations
its non-linearities need: counted sites and elements before and after
``replace_relus``, the largest difference from the original with every
mask on (inputs in [0, 1], and N(0, 1)), the elements ``harden`` keeps at
10 %, whether ``export_all`` publishes it (its SavedModel and ONNX graphs
checked against the count), and the wall time of each step.

    python benchmarks/applications.py                      # all models
    python benchmarks/applications.py --models MobileNetV3Small --no-export
"""

import argparse
import tempfile
import time

import keras
import numpy as np

from keras_autorep.export import export_all
from keras_autorep.graph import count_relus, harden, replace_relus

MODELS = {
    "ResNet50": ("relu",),
    "MobileNetV2": ("relu6",),
    "MobileNetV3Small": ("relu", "relu6", "hard_swish"),
    "EfficientNetB0": ("silu",),
    "EfficientNetB2": ("silu",),
    "DenseNet121": ("relu",),
}


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def measure(name, chosen, export):
    """One row of the table, as a dict."""
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(32, 32, 3), classes=10,
        classifier_activation=None)
    before = count_relus(model)
    converted, convert_s = timed(replace_relus, model, activations=chosen)
    count, count_s = timed(count_relus, converted)
    rng = np.random.default_rng(0)
    diffs = []
    for x in (rng.uniform(0, 1, (4, 32, 32, 3)),
              rng.normal(0, 1, (4, 32, 32, 3))):
        x = x.astype("float32")
        diffs.append(float(np.max(np.abs(keras.ops.convert_to_numpy(
            converted(x, training=False) - model(x, training=False))))))
    hardened, harden_s = timed(harden, converted, budget="10%")
    hard = count_relus(hardened)
    row = dict(
        model=name, activations=",".join(chosen), sites=len(count.rows),
        before_total=before.total, total=count.total,
        by_activation={row.activation: 0 for row in count.rows},
        other=", ".join(sorted({row.activation or row.kind
                                for row in count.other})) or "none",
        diff_unit=diffs[0], diff_normal=diffs[1], kept=hard.kept,
        convert_s=convert_s, count_s=count_s, harden_s=harden_s,
        export="skipped", export_s=None)
    for site in count.rows:
        row["by_activation"][site.activation] += site.total
    if export:
        with tempfile.TemporaryDirectory() as out:
            _, row["export_s"] = timed(export_all, hardened, out,
                                       name.lower())
        row["export"] = "ok"
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS),
                        default=list(MODELS))
    parser.add_argument("--no-export", action="store_true",
                        help="skip the exports (minutes per model)")
    args = parser.parse_args(argv)
    print("| model | activations | sites / elements (before: ReLUs) | other "
          "| max abs diff, all masks on ([0,1] / N(0,1) inputs) | harden 10 %"
          " kept | export | convert / count / harden / export s |")
    print("|---|---|---|---|---|---:|---|---|")
    for name in args.models:
        row = measure(name, MODELS[name], not args.no_export)
        split = ", ".join(f"{activation} {total:,}" for activation, total
                          in row["by_activation"].items())
        export_s = ("-" if row["export_s"] is None
                    else f"{row['export_s']:.0f}")
        print(f"| {row['model']} | {row['activations']} | {row['sites']} / "
              f"{row['total']:,} ({split}; before {row['before_total']:,}) "
              f"| {row['other']} | {row['diff_unit']:.1e} / "
              f"{row['diff_normal']:.1e} | {row['kept']:,} | {row['export']} "
              f"| {row['convert_s']:.1f} / {row['count_s']:.1f} / "
              f"{row['harden_s']:.1f} / {export_s} |", flush=True)


if __name__ == "__main__":
    main()
