"""CryptoNAS on a ReLU budget: search a ReLU-balanced network, train, export.

    python recipes/cryptonas.py --budget 86k --data-dir ../shared/data/cifar10-images.tar.gz

See `python recipes/cryptonas.py --help` and docs/cryptonas.md.
"""

from keras_autorep.recipes.entry_points import cryptonas

if __name__ == "__main__":
    cryptonas()
