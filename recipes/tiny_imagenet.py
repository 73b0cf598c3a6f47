"""AutoReP on Tiny-ImageNet-200 within a ReLU budget.

    python recipes/tiny_imagenet.py --budget 55k --data-dir ../shared/data/tiny-imagenet-200.tar.gz

See `python recipes/tiny_imagenet.py --help` and docs/recipes.md.
"""

import sys

from keras_autorep.recipes.cli import main

if __name__ == "__main__":
    sys.exit(main(dataset="tiny_imagenet"))
