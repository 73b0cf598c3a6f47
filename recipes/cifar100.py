"""AutoReP on CIFAR-100 within a ReLU budget.

    python recipes/cifar100.py --budget 12.9k

See `python recipes/cifar100.py --help` and docs/recipes.md.
"""

from keras_autorep.recipes.entry_points import cifar100

if __name__ == "__main__":
    cifar100()
