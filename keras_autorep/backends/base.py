"""What keras_autorep asks of a Keras backend, with the answers of a
backend it has no engine code for (e.g. PyTorch): no tracing, no data
parallelism, NumPy input pipelines, no export."""

import contextlib


class Backend:
    """The running Keras backend, one concern per member.

    Attributes:
        name: ``keras.backend.backend()``.
        pipeline: the input pipeline ``make_datasets`` picks by default
            (``"tf"``: ``tf.data``; ``"numpy"``: a ``PyDataset``).
        exports: whether it can write the SavedModel and ONNX graphs.
        multi_host: whether ``keras.distribution.initialize()`` can join
            several hosts.
    """

    pipeline = "numpy"
    exports = False
    multi_host = False

    def __init__(self, name):
        self.name = name

    def trace(self, model, examples):
        """The ``TracedOp`` list of one inference call of ``model`` on
        ``examples`` (NumPy arrays, a batch of one per model input)."""
        raise NotImplementedError(
            f"tracing a model needs the TensorFlow or JAX backend, not "
            f"{self.name!r}"
        )

    def data_parallel(self, devices):
        """The engine's data-parallel distribution over ``devices``
        (names from ``keras.distribution.list_devices()``)."""
        raise ValueError(
            f"data parallelism needs the JAX or TensorFlow backend, not "
            f"{self.name}")

    def replicas_in_sync(self):
        """Replicas running each training step in lockstep."""
        return 1

    def xla_scope(self):
        """A context in which the ops a traced call creates compile
        together with XLA while the rest of its graph keeps the engine's
        kernels; a no-op where the engine compiles whole functions only
        (JAX) or nothing."""
        return contextlib.nullcontext()

    def check_exports(self):
        """Raise ``RuntimeError`` unless this backend can export."""
        if not self.exports:
            raise RuntimeError(
                "exporting needs the TensorFlow backend (the graph is built "
                f"with TensorFlow), but Keras runs on {self.name!r}: set "
                "KERAS_BACKEND=tensorflow, reload the model and export again"
            )
