"""AutoReP on CIFAR-10 within a ReLU budget.

    python recipes/cifar10.py --budget 12.9k --data-dir ../shared/data/cifar10-images.tar.gz

See `python recipes/cifar10.py --help` and docs/recipes.md.
"""

import sys

from keras_autorep.recipes.cli import main

if __name__ == "__main__":
    sys.exit(main(dataset="cifar10"))
