"""Adapters: the only modules that touch private third-party internals.

Each private attribute or module of Keras, TensorFlow or keras-tuner that
keras_autorep relies on is used in exactly one function here, so a library
upgrade that moves it breaks one small, named place. ``keras_tuner_seed``
holds keras-tuner's reading of seed 0, which its oracle implements.
"""
