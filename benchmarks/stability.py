"""Input-scale sweep: how stable are exported models off their training range?

Polynomial activations grow without bound where ReLU saturates nothing, so
a hardened model can overflow on inputs brighter than its training images.
For each exported model (a version folder holding ``model.keras``) and each
input scale, the test images (pixels in [0, 1]) are multiplied by the scale
and the table shows the share of examples with finite logits, the largest
``|logit|`` and the top-1 accuracy.

    python benchmarks/stability.py --data-dir ../shared/data/cifar10-images.tar.gz \\
        saved_models/cifar10_resnet_small_12.9k_quick/1 [more exports ...]

With ``--image-size N`` the test images are the center crops the ImageNet
recipe evaluates on, from an image-folder tree (e.g. Tiny-ImageNet-200):

    python benchmarks/stability.py --image-size 64 --data-dir tiny-imagenet-200 \\
        saved_models/imagenet_efficientnet_b0_176.1x_quick/1
"""

import argparse
from pathlib import Path

import keras
import numpy as np

from keras_autorep.data import load_dataset, load_image_streams
from keras_autorep.data.streams import IMAGENET
from keras_autorep.recipes.cli import subset_argument

SCALES = (1.0, 1.5, 2.0, 3.0)


def sweep(model, images, labels, scales=SCALES):
    """``[(scale, finite share, max |logit|, top-1)]`` for one model."""
    rows = []
    for scale in scales:
        logits = model.predict(images * scale, verbose=0, batch_size=256)
        finite = np.all(np.isfinite(logits), axis=-1)
        largest = float(np.max(np.abs(logits[finite]))) if finite.any() \
            else float("nan")
        correct = (np.argmax(np.where(np.isfinite(logits), logits, -np.inf),
                             -1) == labels) & finite
        rows.append((scale, float(finite.mean()), largest,
                     float(correct.mean())))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="benchmarks/stability.py", description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="+",
                        help="version folders holding model.keras")
    parser.add_argument("--data-dir", required=True,
                        help="CIFAR-10 folder or archive (or an image tree: "
                             "--image-size)")
    parser.add_argument("--subset", type=subset_argument, default=(1, 2000),
                        metavar="N_TRAIN,N_TEST",
                        help="class-balanced sample (default 1,2000: 2,000 "
                             "test images)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--image-size", type=int, default=None,
                        help="read --data-dir as the ImageNet recipe does: "
                             "center crops of this side (default: CIFAR-10)")
    args = parser.parse_args(argv)
    if args.image_size:
        _, test, _ = load_image_streams(IMAGENET, args.data_dir,
                                        args.image_size, subset=args.subset)
        images, y = test.sample(len(test))
    else:
        _, (x, y), _ = load_dataset("cifar10", data_dir=args.data_dir,
                                    cache_dir=args.cache_dir,
                                    subset=args.subset, verbose=0)
        images = x.astype("float32") / 255.0
    print(f"{len(y):,} test images; logits of the exported models at input "
          "scales " + ", ".join(f"x{s:g}" for s in SCALES))
    print("| model | scale | finite | max abs logit | top-1 |")
    print("|---|---:|---:|---:|---:|")
    for export in args.exports:
        model = keras.saving.load_model(Path(export) / "model.keras",
                                        compile=False)
        for scale, finite, largest, top1 in sweep(model, images, y):
            print(f"| {export} | x{scale:g} | {finite:.2%} | {largest:.3g} | "
                  f"{top1:.2%} |", flush=True)


if __name__ == "__main__":
    main()
