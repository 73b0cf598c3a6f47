"""Keras layers of keras_autorep (all registered serialisable)."""

from keras_autorep.layers.partial_relu import PartialReLU, sites_without_xla
from keras_autorep.layers.polynomial_activation import PolynomialActivation
from keras_autorep.layers.relu_selector import ReLUSelector
from keras_autorep.layers.soft_relu_mask import SoftReLUMask

__all__ = [
    "PartialReLU", "PolynomialActivation", "ReLUSelector", "SoftReLUMask",
    "sites_without_xla",
]
