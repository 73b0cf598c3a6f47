"""Backend-specific helpers for tests (gradients, traced op names)."""

import keras
import numpy as np


def gradient_wrt(variable, loss_fn):
    """d loss_fn() / d variable as NumPy, on the TensorFlow or JAX backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        return np.asarray(tape.gradient(loss, variable.value))
    if backend == "jax":
        import jax
        from keras.src.backend.common.stateless_scope import StatelessScope

        def loss_of(value):
            with StatelessScope(state_mapping=[(variable, value)]):
                return loss_fn()

        return np.asarray(jax.grad(loss_of)(variable.value))
    raise NotImplementedError(f"no gradient helper for backend {backend}")


def gradients(fn, *args):
    """The gradients of the scalar ``fn(*args)`` with respect to each of the
    NumPy arrays ``args``, as NumPy, on the TensorFlow or JAX backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in args]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value = fn(*tensors)
        return [np.asarray(g) for g in tape.gradient(value, tensors)]
    if backend == "jax":
        import jax

        grads = jax.grad(fn, argnums=tuple(range(len(args))))(*args)
        return [np.asarray(g) for g in grads]
    raise NotImplementedError(f"no gradient helper for backend {backend}")


def op_names(fn, *args):
    """The op types (TensorFlow) or primitive names (JAX, nested jaxprs
    included) of one traced call of ``fn`` on the NumPy arrays ``args``."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        graph = tf.function(fn).get_concrete_function(
            *[tf.TensorSpec(a.shape, a.dtype) for a in args]).graph
        return [op.type for op in graph.get_operations()]
    if backend == "jax":
        import jax

        def names(jaxpr):
            for eqn in jaxpr.eqns:
                yield eqn.primitive.name
                for param in eqn.params.values():
                    sub = getattr(param, "jaxpr", None)
                    if sub is not None:
                        yield from names(sub)

        return list(names(jax.make_jaxpr(fn)(*args).jaxpr))
    raise NotImplementedError(f"no op-name helper for backend {backend}")
