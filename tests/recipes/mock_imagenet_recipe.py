"""Run ``recipes/imagenet.py`` on tensorflow-datasets' mock ``imagenet2012``
(random images of random sizes, random labels), for the recipe tests.

    python mock_imagenet_recipe.py EXAMPLES WEIGHTS_FILE MODEL SIZE -- ARGS...

Writes the weights of a freshly initialised ``MODEL`` at ``SIZE`` x
``SIZE`` (1000 classes) to ``WEIGHTS_FILE`` first, for ``--teacher``.
"""

import sys

import tensorflow_datasets as tfds

from keras_autorep.architectures import get_model
from keras_autorep.recipes.cli import main


def run(examples, weights, model, size, argv):
    get_model(model, input_shape=(size, size, 3)).save_weights(weights)
    with tfds.testing.mock_data(num_examples=examples):
        return main(argv, dataset="imagenet")


if __name__ == "__main__":
    examples, weights, model, size, separator, *argv = sys.argv[1:]
    assert separator == "--", sys.argv
    sys.exit(run(int(examples), weights, model, int(size), argv))
