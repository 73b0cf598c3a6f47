"""AutoReP on Tiny-ImageNet-200 within a ReLU budget.

    python recipes/tiny_imagenet.py --budget 55k --data-dir ../shared/data/tiny-imagenet-200.tar.gz

See `python recipes/tiny_imagenet.py --help` and docs/recipes.md.
"""

from keras_autorep.recipes.entry_points import tiny_imagenet

if __name__ == "__main__":
    tiny_imagenet()
