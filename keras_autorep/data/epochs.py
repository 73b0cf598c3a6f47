"""Training pipelines addressed by epoch, so that a fit can go on mid-epoch.

Each epoch of a training pipeline is a pure function of ``(seed, epoch)``:
its order (a stateless shuffle) and its augmentation draws (stateless
seeds folded from the epoch and the position of the image or batch in it).
An ``EpochPosition`` says which epoch the pipeline's next pass over the
data yields and how many of its batches to leave out: the checkpoint
callback (``keras_autorep.training.checkpoints``) sets it when it restores
a fit in the middle of an epoch and at every epoch start, so the resumed
fit sees the batches an uninterrupted one would. Without such a callback
each pass yields the next epoch (a new order every epoch).

Keras starts a new pass at every epoch; ``epoch_passes`` gives the
pipeline the cardinality of a whole epoch, and a shortened (resumed) epoch
ends early, which Keras takes as the end of that epoch.
"""


class EpochPosition:
    """Where the next pass of a training pipeline starts: ``epoch`` and
    ``skip``, the batches of it already trained."""

    def __init__(self):
        self.epoch = 0
        self.skip = 0
        self._shortened = False

    def begin(self, epoch, skip=0):
        """The next pass yields ``epoch`` from its batch ``skip``."""
        self.epoch, self.skip = int(epoch), int(skip)
        self._shortened = False

    def take(self):
        """``(epoch, skip)`` of the next pass; the position moves on to the
        next epoch."""
        epoch, skip = self.epoch, self.skip
        self.epoch, self.skip = epoch + 1, 0
        return epoch, skip

    def passes(self):
        """Generator of the next pass's ``(epoch, skip)``; right after a
        shortened pass (``skip > 0``) it yields nothing, which ends that
        epoch."""
        if self._shortened:
            self._shortened = False
            return
        epoch, skip = self.take()
        self._shortened = skip > 0
        yield epoch, skip


def epoch_seed(tf, seed, epoch):
    """The stateless seed (two int64) of ``epoch`` of a pipeline seeded with
    ``seed``."""
    return tf.random.experimental.stateless_fold_in(
        tf.constant([seed, 0], tf.int64), tf.cast(epoch, tf.int64))


def epoch_order(tf, size, seed):
    """A permutation of ``range(size)`` (int64) drawn from ``seed``."""
    return tf.random.experimental.stateless_shuffle(
        tf.range(size, dtype=tf.int64), seed)


def epoch_passes(tf, position, batches, epoch_pass):
    """A pipeline of ``batches`` batches per pass: each pass yields
    ``epoch_pass(epoch, skip)`` (a dataset of the batches of ``epoch``
    from batch ``skip`` on) at the ``position`` it starts from."""
    signature = (tf.TensorSpec((), tf.int64), tf.TensorSpec((), tf.int64))
    starts = tf.data.Dataset.from_generator(position.passes,
                                            output_signature=signature)
    # repeat().take() gives Keras the cardinality of a whole epoch; a
    # shortened pass is followed by an empty one, which ends the epoch.
    return starts.flat_map(epoch_pass).repeat().take(batches).prefetch(
        tf.data.AUTOTUNE)
