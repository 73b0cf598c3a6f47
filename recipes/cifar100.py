"""AutoReP on CIFAR-100 within a ReLU budget.

    python recipes/cifar100.py --budget 12.9k

See `python recipes/cifar100.py --help` and docs/recipes.md.
"""

import sys

from keras_autorep.recipes.cli import main

if __name__ == "__main__":
    sys.exit(main(dataset="cifar100"))
