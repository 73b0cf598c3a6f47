"""Starting a Keras ``fit`` part-way, through its internals.

``start_fit_at(model, epoch)``: the ``fit`` running on ``model`` starts at
``epoch``; Keras reads the private ``Model._initial_epoch`` after the
callbacks' ``on_train_begin``, as ``keras.callbacks.BackupAndRestore``
uses it. ``RAN_OUT`` begins the warning Keras gives when a pipeline ends
before the epoch's steps (the end of a resumed, shorter epoch).
"""

RAN_OUT = "Your input ran out of data"


def start_fit_at(model, epoch):
    """The running ``fit`` of ``model`` starts at ``epoch`` (``None``: at
    the ``initial_epoch`` it was given)."""
    model._initial_epoch = epoch
