"""CryptoNAS on a ReLU budget: search a ReLU-balanced network, train, export.

    python recipes/cryptonas.py --budget 86k --data-dir ../shared/data/cifar10-images.tar.gz

See `python recipes/cryptonas.py --help` and docs/cryptonas.md.
"""

import sys

from keras_autorep.recipes.cli import cryptonas_main

if __name__ == "__main__":
    sys.exit(cryptonas_main())
