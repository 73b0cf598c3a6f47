"""Keras layers of keras_autorep (all registered serialisable)."""

from keras_autorep.layers.partial_relu import PartialReLU
from keras_autorep.layers.polynomial_activation import PolynomialActivation
from keras_autorep.layers.relu_selector import ReLUSelector

__all__ = ["PartialReLU", "PolynomialActivation", "ReLUSelector"]
