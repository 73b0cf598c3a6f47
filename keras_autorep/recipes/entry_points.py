"""Console entry points of the recipes (``keras-autorep-cifar10`` and its
siblings, declared in setup.py); ``recipes/*.py`` call the same functions."""

import sys

from keras_autorep.recipes.cli import cryptonas_main, main


def cifar10():
    sys.exit(main(dataset="cifar10"))


def cifar100():
    sys.exit(main(dataset="cifar100"))


def tiny_imagenet():
    sys.exit(main(dataset="tiny_imagenet"))


def imagenet():
    sys.exit(main(dataset="imagenet"))


def cryptonas():
    sys.exit(cryptonas_main())
