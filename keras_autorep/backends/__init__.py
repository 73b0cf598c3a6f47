"""The one seam between keras_autorep and the Keras backend engines.

``current()`` is the running backend as a ``Backend``, one member per
concern: tracing an inference call (``trace``, the walk over a TF graph or
a jaxpr), data parallelism (``data_parallel``, ``replicas_in_sync``,
``multi_host``), the input pipeline (``pipeline``) and exporting
(``exports``, ``check_exports``). ``tensorflow`` and ``jax`` implement it
(importing their engine on first use); any other Keras backend gets the
base ``Backend``. ``tf_graph_comparisons`` walks a TF graph outside a
model (an exported signature). Nothing else in the package asks Keras
which backend runs.
"""

import keras

from keras_autorep.backends.base import Backend
from keras_autorep.backends.jax import Jax
from keras_autorep.backends.tensorflow import (
    TensorFlow,
    graph_comparisons as tf_graph_comparisons,
)
from keras_autorep.backends.traced import (
    COMPARISON,
    MAX,
    RELU,
    SMOOTH,
    TracedOp,
)

_ENGINES = {"tensorflow": TensorFlow, "jax": Jax}


def current():
    """The running Keras backend (``keras.backend.backend()``)."""
    name = keras.backend.backend()
    return _ENGINES.get(name, Backend)(name)


__all__ = [
    "Backend",
    "COMPARISON",
    "MAX",
    "RELU",
    "SMOOTH",
    "TracedOp",
    "current",
    "tf_graph_comparisons",
]
