"""Training a selector student from its all-ReLU teacher, with ``fit``.

``DistillationTrainer`` adds to the compiled loss (cross-entropy on logits,
optionally weighted through ``compile(loss_weights=...)``):

* ``distillation_weight * T^2 * KL(softmax(t / T) || softmax(s / T))``;
* ``attention_weight * AT``: attention transfer on the post-activation maps
  of every ReLU site (Zagoruyko & Komodakis 2017, as used by SENet). For a
  map ``x`` of shape ``(N, H, W, C)``: ``A(x) = sum_c x^2``, flattened to
  ``H * W`` and divided by its L2 norm; ``AT = mean over sites and examples
  of ||A(teacher) - A(student)||_2``. (A site without spatial axes uses
  ``x^2`` per unit.)

Both terms are training-only; validation reports the compiled loss. The
kept ReLU count is logged as ``relu_count``, as ``BudgetTrainer`` does. The
teacher's maps are read at its ReLU layers: a selector named ``X`` matches
the teacher's layer ``X`` (a ``ReLU`` / ``Activation`` layer) or, for a
fused activation split by ``replace_relus``, a selector ``X_relu`` matches
the teacher's layer ``X``.
"""

import keras
from keras import ops

from keras_autorep.conversion import selectors
from keras_autorep.counting import count_relus
from keras_autorep.training import (
    LastValue,
    TeacherStudentModel,
    distillation_loss,
)


def attention_map(activations):
    """``sum_c x^2`` flattened per example and L2-normalised."""
    x = ops.cast(activations, "float32")
    if len(x.shape) > 2:
        x = ops.sum(ops.square(x), axis=-1)
    else:
        x = ops.square(x)
    x = ops.reshape(x, (ops.shape(x)[0], -1))
    return x / ops.sqrt(ops.sum(ops.square(x), axis=1, keepdims=True) + 1e-12)


def attention_transfer_loss(teacher_activations, student_activations):
    """Mean over sites and examples of ``||A(t) - A(s)||_2``."""
    terms = []
    for t, s in zip(teacher_activations, student_activations):
        difference = attention_map(t) - attention_map(s)
        terms.append(
            ops.mean(ops.sqrt(ops.sum(ops.square(difference), axis=1) + 1e-12))
        )
    return ops.mean(ops.stack(terms))


def teacher_site_layer(teacher, site_name):
    """The teacher layer whose output is the ReLU map of ``site_name``."""
    names = {layer.name for layer in teacher.layers}
    if site_name in names:
        return teacher.get_layer(site_name)
    if site_name.endswith("_relu") and site_name[: -len("_relu")] in names:
        return teacher.get_layer(site_name[: -len("_relu")])
    raise ValueError(
        f"teacher {teacher.name!r} has no layer matching the ReLU site "
        f"{site_name!r}; the student must come from replace_relus(teacher)"
    )


def _with_activations(model, layers):
    """A functional view of ``model`` returning ``[logits, *layer outputs]``
    (shares the layers, adds no node to them)."""
    return keras.Model(
        model.inputs, [model.outputs[0], *[layer.output for layer in layers]]
    )


class DistillationTrainer(TeacherStudentModel):
    """Trains a student with CE + knowledge distillation (+ AT) via ``fit``.

    Args:
        student: a built model with ``ReLUSelector`` layers that outputs
            logits.
        teacher: optional all-ReLU model of the same architecture (logits);
            it is never trained (see ``TeacherStudentModel``).
            Needed for the distillation and AT terms.
        distillation_weight: weight of the distillation term (default 1).
        temperature: distillation temperature (default 4).
        attention_weight: weight of the attention-transfer term (default 0).
        with_activations: also run the per-site maps through
            ``observe_activations`` (subclasses), even without AT.

    Example:

    >>> trainer = DistillationTrainer(student, teacher, attention_weight=1.0)
    >>> trainer.compile(optimizer="adam",
    ...                 loss=keras.losses.SparseCategoricalCrossentropy(
    ...                     from_logits=True), metrics=["accuracy"])
    >>> trainer.fit(x, y, epochs=3)
    """

    def __init__(
        self,
        student,
        teacher=None,
        distillation_weight=1.0,
        temperature=4.0,
        attention_weight=0.0,
        with_activations=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if temperature <= 0 or distillation_weight < 0 or attention_weight < 0:
            raise ValueError(
                "temperature must be > 0 and the weights >= 0, got "
                f"temperature={temperature}, distillation_weight="
                f"{distillation_weight}, attention_weight={attention_weight}"
            )
        if teacher is None and (attention_weight or with_activations):
            raise ValueError(
                "attention transfer and activation hooks need a teacher"
            )
        self.student = student
        self.teacher = teacher
        self.distillation_weight = float(distillation_weight)
        self.temperature = float(temperature)
        self.attention_weight = float(attention_weight)
        self.sites = selectors(student)
        self.fixed_relus = count_relus(student).total - sum(
            site.total_relus for site in self.sites
        )
        self.relu_count = LastValue(name="relu_count")
        self.uses_activations = bool(attention_weight or with_activations)
        if self.uses_activations:
            self._student_view = _with_activations(student, self.sites)
            teacher_layers = [
                teacher_site_layer(teacher, site.name) for site in self.sites
            ]
            self._teacher_view = _with_activations(teacher, teacher_layers)
        # The student is built and the trainer's own variables are created
        # in __init__, so BackupAndRestore can restore it before any batch.
        self.built = True

    def call(self, inputs, training=False):
        if not training or self.teacher is None:
            return self.student(inputs, training=training)
        if self.uses_activations:
            logits, *activations = self._student_view(inputs, training=True)
            teacher_logits, *teacher_activations = [
                ops.stop_gradient(t)
                for t in self._teacher_view(inputs, training=False)
            ]
        else:
            logits = self.student(inputs, training=True)
            teacher_logits = ops.stop_gradient(
                self.teacher(inputs, training=False)
            )
        if self.distillation_weight:
            self.add_loss(
                self.distillation_weight
                * distillation_loss(teacher_logits, logits, self.temperature)
            )
        if self.uses_activations:
            if self.attention_weight:
                self.add_loss(
                    self.attention_weight
                    * attention_transfer_loss(teacher_activations, activations)
                )
            self.observe_activations(teacher_activations, activations)
        return logits

    def observe_activations(self, teacher_activations, student_activations):
        """Hook called on every training step with the per-site maps."""

    def kept_relus(self):
        """Kept ReLUs of the student now (selector masks plus the counted
        ReLUs outside selectors), as a scalar tensor."""
        kept = [ops.stop_gradient(site.kept_relus()) for site in self.sites]
        return ops.sum(ops.stack([0.0, *kept])) + float(self.fixed_relus)

    def count(self):
        """``kept_relus()`` as an int."""
        return int(ops.convert_to_numpy(self.kept_relus()))

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        loss = super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
            training=training,
        )
        self.relu_count.update_state(self.kept_relus())
        return loss


def phase_callbacks(callbacks, phase):
    """The callbacks of one training phase.

    ``callbacks`` is a list (used by every phase; avoid stateful ones such
    as ``BackupAndRestore`` there) or a function ``phase -> list`` that
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
