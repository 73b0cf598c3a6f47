"""AutoReP on CIFAR-10 within a ReLU budget.

    python recipes/cifar10.py --budget 12.9k --data-dir ../shared/data/cifar10-images.tar.gz

See `python recipes/cifar10.py --help` and docs/recipes.md.
"""

from keras_autorep.recipes.entry_points import cifar10

if __name__ == "__main__":
    cifar10()
