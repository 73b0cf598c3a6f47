"""Fitting a trainer for one phase of a method (compile + ``fit``)."""

import keras


def phase_callbacks(callbacks, phase):
    """The callbacks of one training phase.

    ``callbacks`` is a list (used by every phase; avoid stateful ones such
    as ``StepCheckpoint`` there) or a function ``phase -> list`` that
    gives each phase its own (e.g. its own backup folder and log file).
    """
    if callable(callbacks):
        return list(callbacks(phase))
    return list(callbacks or [])


def fit_phase(
    trainer,
    train_data,
    val_data=None,
    *,
    epochs,
    lr,
    phase,
    callbacks=None,
    loss_weight=1.0,
    metrics=None,
    batch_size=None,
    verbose="auto",
    extra_callbacks=(),
):
    """Compile ``trainer`` with Adam and fit it for one phase.

    Args:
        trainer: a ``DistillationTrainer`` (or subclass).
        train_data: a ``tf.data.Dataset``, ``keras.utils.PyDataset`` or an
            ``(x, y)`` tuple of arrays; labels are class indices.
        val_data: optional validation data, same forms.
        epochs: epochs of this phase (0 skips it).
        lr: Adam learning rate (a float or a schedule).
        phase: phase name handed to ``callbacks`` when it is a function.
        callbacks: see ``phase_callbacks``.
        loss_weight: weight of the cross-entropy.
        metrics: compiled metrics (default ``["accuracy"]``).
        batch_size: batch size for array data.
        verbose: ``fit`` verbosity.
        extra_callbacks: the method's own callbacks, run first.

    Returns:
        The ``History``, or ``None`` when ``epochs`` is 0.
    """
    if epochs <= 0:
        return None
    trainer.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        loss_weights=float(loss_weight),
        metrics=list(metrics) if metrics is not None else ["accuracy"],
    )
    x, y = split_data(train_data)
    return trainer.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=val_data,
        callbacks=[*extra_callbacks, *phase_callbacks(callbacks, phase)],
        shuffle=y is not None,  # datasets shuffle themselves
        verbose=verbose,
    )


def split_data(data):
    """``(x, y)`` for ``fit``/``evaluate``: arrays from an ``(x, y)`` tuple,
    else ``(data, None)`` for datasets that yield both."""
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(
                f"array data must be an (x, y) pair, got {len(data)} items"
            )
        return data[0], data[1]
    return data, None
