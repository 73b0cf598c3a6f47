"""Training on a ReLU budget with plain ``model.fit`` (AutoReP loss).

``BudgetTrainer`` wraps a model whose ReLUs were replaced by
``ReLUSelector`` layers and adds to the compiled loss (cross-entropy):

* distillation from an optional all-ReLU teacher:
  ``T^2 * KL(softmax(t / T) || softmax(s / T))`` at temperature ``T = 4``,
  weighted 1:1 with the cross-entropy by default;
* the budget term ``lambda * max(0, kept / N - B / N)`` where ``kept`` is the
  straight-through sum of all masks, ``N`` the model's total ReLU count and
  ``B`` the budget.

The current kept-ReLU count appears in the progress bar and in ``fit``'s
history as ``relu_count`` (``val_relu_count`` on validation data).
"""

import keras
from keras import ops

from keras_autorep.budget import parse_budget
from keras_autorep.conversion import selectors
from keras_autorep.counting import count_relus


@keras.saving.register_keras_serializable(package="keras_autorep")
class LastValue(keras.metrics.Metric):
    """A metric that reports the most recent value it was given."""

    def __init__(self, name="last_value", **kwargs):
        super().__init__(name=name, **kwargs)
        self.value = self.add_variable(
            shape=(), initializer="zeros", name="value"
        )

    def update_state(self, value):
        self.value.assign(ops.cast(value, self.value.dtype))

    def result(self):
        return ops.convert_to_tensor(self.value)

    def reset_state(self):
        self.value.assign(0.0)


def distillation_loss(teacher_logits, student_logits, temperature=4.0):
    """``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch."""
    t = ops.cast(teacher_logits, "float32") / temperature
    s = ops.cast(student_logits, "float32") / temperature
    teacher_log_probs = ops.log_softmax(t, axis=-1)
    student_log_probs = ops.log_softmax(s, axis=-1)
    kl = ops.sum(
        ops.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs),
        axis=-1,
    )
    return ops.mean(kl) * temperature**2


class TeacherStudentModel(keras.Model):
    """Base of the trainers: a student trained with a fixed teacher.

    The optimizer never sees the teacher's variables (they are listed as
    non-trainable state of the trainer), yet the teacher is left as it was
    given: its ``trainable`` flags are not touched, so a student built from
    it later (``replace_relus(teacher)``) is as trainable as the first.
    Subclasses set ``self.teacher`` (``None`` for no teacher).
    """

    def _teacher_variable_ids(self):
        teacher = getattr(self, "teacher", None)
        return set() if teacher is None else {id(v) for v in teacher.variables}

    @property
    def trainable_variables(self):
        fixed = self._teacher_variable_ids()
        return [v for v in super().trainable_variables if id(v) not in fixed]

    @property
    def non_trainable_variables(self):
        trainable = {id(v) for v in self.trainable_variables}
        return [v for v in self.variables if id(v) not in trainable]

    @property
    def trainable_weights(self):
        fixed = self._teacher_variable_ids()
        return [v for v in super().trainable_weights if id(v) not in fixed]

    @property
    def non_trainable_weights(self):
        trainable = {id(v) for v in self.trainable_weights}
        return [v for v in self.weights if id(v) not in trainable]


class BudgetTrainer(TeacherStudentModel):
    """Trains a selector model with the AutoReP budget loss via ``fit``.

    Args:
        student: a built model with ``ReLUSelector`` layers (see
            ``replace_relus``); it outputs logits.
        budget: the ReLU budget (anything ``parse_budget`` accepts).
        teacher: optional all-ReLU model giving logits for distillation; it
            is never trained (and left trainable: see ``TeacherStudentModel``).
        budget_weight: ``lambda`` of the budget term (AutoReP's released
            scripts use 80-240; default 10).
        temperature: distillation temperature (default 4).
        distillation_weight: weight of the distillation term relative to the
            compiled loss (default 1).

    Example:

    >>> trainer = BudgetTrainer(replace_relus(model), budget="10%",
    ...                         teacher=model)
    >>> trainer.compile(optimizer="adam",
    ...                 loss=keras.losses.SparseCategoricalCrossentropy(
    ...                     from_logits=True), metrics=["accuracy"])
    >>> trainer.fit(x, y, epochs=3)   # logs relu_count every epoch
    """

    def __init__(
        self,
        student,
        budget,
        teacher=None,
        budget_weight=10.0,
        temperature=4.0,
        distillation_weight=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.selectors = selectors(student)
        if not self.selectors:
            raise ValueError(
                f"model {student.name!r} has no ReLUSelector layers; convert "
                "it with keras_autorep.replace_relus first"
            )
        count = count_relus(student)
        self.total_relus = count.total
        self.budget = parse_budget(budget, total=count.total)
        self.fixed_relus = count.total - sum(s.total_relus for s in self.selectors)
        if self.fixed_relus > self.budget:
            raise ValueError(
                f"the model has {self.fixed_relus:,} counted ReLUs outside "
                f"selectors, more than the budget of {self.budget:,}"
            )
        if temperature <= 0 or budget_weight < 0 or distillation_weight < 0:
            raise ValueError(
                "temperature must be > 0 and the weights >= 0, got "
                f"temperature={temperature}, budget_weight={budget_weight}, "
                f"distillation_weight={distillation_weight}"
            )
        self.student = student
        self.teacher = teacher
        self.budget_weight = float(budget_weight)
        self.temperature = float(temperature)
        self.distillation_weight = float(distillation_weight)
        self.relu_count = LastValue(name="relu_count")
        # The student is built and the trainer has no weights of its own, so
        # checkpoint callbacks can restore it before the first batch.
        self.built = True

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def kept_relus(self):
        """Kept ReLUs now, differentiable through the straight-through masks."""
        kept = ops.sum(ops.stack([s.kept_relus() for s in self.selectors]))
        return kept + float(self.fixed_relus)

    def budget_penalty(self, kept):
        """``lambda * max(0, kept / N - B / N)``."""
        excess = (kept - float(self.budget)) / float(self.total_relus)
        return self.budget_weight * ops.relu(excess)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        loss = super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
            training=training,
        )
        if self.teacher is not None and self.distillation_weight:
            teacher_logits = ops.stop_gradient(self.teacher(x, training=False))
            loss = loss + self.distillation_weight * distillation_loss(
                teacher_logits, y_pred, self.temperature
            )
        kept = self.kept_relus()
        self.relu_count.update_state(ops.stop_gradient(kept))
        return loss + self.budget_penalty(kept)
