"""keras-tuner's traceback printing, switched off for a block."""

import contextlib

from keras_tuner.src import config


@contextlib.contextmanager
def tracebacks_off():
    """keras-tuner prints a traceback for every failed trial while its
    ``DEBUG`` flag is set; clear it inside the block."""
    debug, config.DEBUG = config.DEBUG, False
    try:
        yield
    finally:
        config.DEBUG = debug
