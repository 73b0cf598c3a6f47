"""TensorFlow replicas (``tf.distribute.MirroredStrategy``) as the layers and
the trainer see them.

Under a ``MirroredStrategy`` every replica runs the training step on its
share of the global batch, so batch statistics must be all-reduced and loss
terms scaled like Keras scales the compiled loss. JAX's ``DataParallel``
runs one global program (a batch mean already spans the global batch), so
there each function is the identity.
"""

import keras
from keras.src.losses.loss import scale_loss_for_distribution


def replicas_in_sync():
    """Replicas running each step in lockstep: the ``MirroredStrategy``'s
    under TensorFlow, else 1."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_for_replicas(loss):
    """A per-replica loss term scaled as Keras scales the compiled loss
    (``1 / replicas`` under a ``MirroredStrategy``), so that the summed
    gradients count it once."""
    return scale_loss_for_distribution(loss)
