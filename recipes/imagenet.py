"""AutoReP on ImageNet with EfficientNet-B2, SiLU sites selected.

    python recipes/imagenet.py --budget 176.1x --data-dir ~/imagenet-manual

`--data-dir` is tensorflow-datasets' manual-download folder of
`imagenet2012` (ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar) or an
image-folder tree; without it, `imagenet2012` must already be prepared.
See `python recipes/imagenet.py --help` and docs/recipes.md.
"""

from keras_autorep.recipes.entry_points import imagenet

if __name__ == "__main__":
    imagenet()
