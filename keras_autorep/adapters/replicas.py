"""Loss terms under TensorFlow replicas (``tf.distribute.MirroredStrategy``),
scaled through a Keras internal.

Under a ``MirroredStrategy`` every replica runs the training step on its
share of the global batch, so loss terms are scaled like Keras scales the
compiled loss (batch statistics are all-reduced where
``keras_autorep.backends.current().replicas_in_sync()`` is above 1). JAX's
``DataParallel`` runs one global program, so there the scaling is the
identity.
"""

from keras.src.losses.loss import scale_loss_for_distribution


def scale_for_replicas(loss):
    """A per-replica loss term scaled as Keras scales the compiled loss
    (``1 / replicas`` under a ``MirroredStrategy``), so that the summed
    gradients count it once."""
    return scale_loss_for_distribution(loss)
