"""One trainer for every method: a student, a fixed teacher, loss terms.

``StudentTrainer(student, teacher, terms)`` trains ``student`` with plain
``compile``/``fit``: the compiled loss (cross-entropy on logits) plus the
loss terms (``keras_autorep.training.losses``) in training steps. The kept
ReLU count (``LiveReLUCount``, computed once per step for the whole model)
appears in the progress bar and history as ``relu_count``
(``val_relu_count`` on validation data); the budget term reads the same
value. So does the share of polynomial inputs outside their fitted
ranges (``keras_autorep.training.ranges``): ``out_of_range`` over all
sites with a DaPa polynomial and ``out_of_range_<site>`` per site, each
the mean over the epoch's batches.

``BudgetTrainer`` (AutoReP) and ``DistillationTrainer`` (SNL, SENet) are
``StudentTrainer`` with their terms chosen from arguments.
"""

import threading

import keras
from keras import ops

from keras_autorep.adapters.replicas import scale_for_replicas
from keras_autorep.budgets import parse_budget
from keras_autorep.costs import CostBudget
from keras_autorep.graph.costing import LiveCost
from keras_autorep.graph.counting import LiveReLUCount, count_relus
from keras_autorep.graph.sites import selectors, sites
from keras_autorep.layers import PolynomialActivation
from keras_autorep.training.losses import (
    AttentionTransfer,
    BudgetHinge,
    CostHinge,
    Distillation,
    Step,
)
from keras_autorep.training.ranges import (
    Stability,
    measure_ranges,
    out_of_range_metrics,
    ranged_sites,
)


@keras.saving.register_keras_serializable(package="keras_autorep")
class LastValue(keras.metrics.Metric):
    """A metric that reports the most recent value it was given."""

    def __init__(self, name="last_value", **kwargs):
        super().__init__(name=name, **kwargs)
        # Replicas report the same value: their mean, not their sum.
        self.value = self.add_variable(
            shape=(), initializer="zeros", name="value", aggregation="mean"
        )

    def update_state(self, value):
        self.value.assign(ops.cast(value, self.value.dtype))

    def result(self):
        return ops.convert_to_tensor(self.value)

    def reset_state(self):
        self.value.assign(0.0)


def _with_outputs(model, layers, input_layers=()):
    """A functional view of ``model`` returning ``[logits, *layer outputs,
    *input_layers' inputs]`` (shares the layers, adds no node to them)."""
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(
        inputs, [model.outputs[0], *[layer.output for layer in layers],
                 *[layer.input for layer in input_layers]]
    )


def teacher_sites(teacher, student_sites):
    """The teacher layers whose outputs match the student's selectors.

    The student comes from ``replace_relus(teacher, activations=...)``, so
    its selectors and the teacher's sites convertible to the selectors'
    activations correspond one to one, in graph order and with equal
    activation shapes.
    """
    activations = {getattr(s, "activation", "relu") for s in student_sites}
    candidates = [site.layer for site in sites(teacher)
                  if site.convertible_to(activations)]
    shapes_match = len(candidates) == len(student_sites) and all(
        tuple(t.output.shape[1:]) == tuple(s.output.shape[1:])
        for t, s in zip(candidates, student_sites)
    )
    if not shapes_match:
        raise ValueError(
            f"teacher {teacher.name!r} has {len(candidates)} ReLU sites that "
            f"do not match the student's {len(student_sites)} selectors; the "
            "student must come from replace_relus(teacher)"
        )
    return candidates


def _distillation(teacher, weight, temperature):
    """``[Distillation(weight, temperature)]`` when there is a teacher and a
    weight, else ``[]`` (the arguments are checked either way)."""
    term = Distillation(weight, temperature)
    return [term] if teacher is not None and term.weight else []


class _RefitPhaseCheck(keras.callbacks.Callback):
    """At each epoch start, lets the trainer drop the DaPa statistics whose
    refit phase has ended (see ``StudentTrainer.make_train_function``)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.make_train_function()


class StudentTrainer(keras.Model):
    """Trains a student with a fixed teacher and loss terms via ``fit``.

    The optimizer never sees the teacher's variables (they are listed as
    non-trainable state of the trainer), yet the teacher is left as it was
    given: its ``trainable`` flags are not touched, so a student built from
    it later (``replace_relus(teacher)``) is as trainable as the first.

    Training steps compute the polynomials' running statistics only while a
    DaPa refit phase needs them: once it is over (checked when the training
    step is built, at each ``fit`` epoch start and each ``train_on_batch``),
    the step is traced again without them.

    Args:
        student: a built model that outputs logits.
        teacher: optional model of the same architecture with all ReLUs
            (logits); needed by the distillation and activation terms.
        terms: loss terms (``keras_autorep.training.losses``), applied in
            training steps.
        count: ``count_relus(student)`` if the caller has it (else
            computed).
        cost: a ``LiveCost`` of the student under a cost budget: its
            predicted cost is in the progress bar and history (``cost_mb``
            or ``cost_ms``) and in each ``Step`` (``CostHinge``).
        stability: the range control (``Stability``: a range penalty
            term, brightness and contrast scaling of the training
            batches, which the teacher sees too); default none.

    Example:

    >>> trainer = StudentTrainer(student, teacher, [Distillation(1.0)])
    >>> trainer.compile(optimizer="adam",
    ...                 loss=keras.losses.SparseCategoricalCrossentropy(
    ...                     from_logits=True), metrics=["accuracy"])
    >>> trainer.fit(x, y, epochs=3)   # logs relu_count every epoch
    """

    def __init__(self, student, teacher=None, terms=(), count=None,
                 cost=None, stability=None, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        stability = stability or Stability()
        self.terms = [*terms, *stability.terms()]
        self.scaling = stability.scaling()
        if teacher is None and any(t.needs_teacher for t in self.terms):
            raise ValueError("distillation, attention transfer and "
                             "activation terms need a teacher")
        self.sites = selectors(student)
        self.relu_counter = LiveReLUCount(student, count)
        self.relu_count = LastValue(name="relu_count")
        self.live_cost = cost
        if cost is not None:
            unit = "mb" if cost.budget.metric == "bytes" else "ms"
            self.cost_scale = 1e-6 if unit == "mb" else 1.0
            self.cost_value = LastValue(name=f"cost_{unit}")
        self._polynomials = [site.polynomial for site in self.sites] + [
            site.layer for site in sites(student)
            if isinstance(site.layer, PolynomialActivation)
        ]
        self.ranged = ranged_sites(self.sites)
        self.out_of_range = out_of_range_metrics(self.ranged)
        self._student_view = self._teacher_view = None
        # What a step's forward pass hands to its loss, per thread: under
        # MirroredStrategy replica steps run in interleaved threads.
        self._forward = threading.local()
        mapped = []
        if any(t.needs_activations for t in self.terms):
            mapped = self.sites
            self._teacher_view = _with_outputs(
                teacher, teacher_sites(teacher, self.sites)
            )
        if mapped or self.ranged:
            self._student_view = _with_outputs(student, mapped, self.ranged)
        for term in self.terms:
            if hasattr(term, "build"):
                term.build(self)
        # The student is built and the trainer's own variables exist, so
        # a checkpoint (StepCheckpoint) can restore it before the first batch.
        self.built = True

    def _teacher_variable_ids(self):
        teacher = self.teacher
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

    def make_train_function(self, force=False):
        """Keras's, traced again when a polynomial's refit phase ended."""
        changed = False
        for layer in self._polynomials:
            needed = layer.statistics_needed()
            changed = changed or needed != layer.track_statistics
            layer.track_statistics = needed
        return super().make_train_function(force=force or changed)

    def fit(self, *args, callbacks=None, **kwargs):
        """Keras's ``fit``, checking the refit phases at each epoch start."""
        callbacks = [*(callbacks or ()), _RefitPhaseCheck()]
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def call(self, inputs, training=False):
        if training and self.scaling is not None:
            inputs = self.scaling(inputs)
        forward = self._forward
        forward.seen = inputs  # what the teacher sees in this step
        forward.activations = forward.site_inputs = ()
        if self._student_view is None:
            return self.student(inputs, training=training)
        logits, *maps = self._student_view(inputs, training=training)
        split = len(maps) - len(self.ranged)
        forward.activations, forward.site_inputs = maps[:split], maps[split:]
        return logits

    def kept_relus(self):
        """The student's kept ReLUs now, as a scalar tensor."""
        return self.relu_counter()

    def count(self):
        """``kept_relus()`` as an int."""
        return int(ops.convert_to_numpy(self.kept_relus()))

    def _step(self, logits, kept, cost, ranges):
        step = Step(logits=logits, kept_relus=kept, cost=cost,
                    ranges=ranges)
        if self.teacher is None:
            return step
        x = self._forward.seen
        if self._teacher_view is None:
            teacher_logits = self.teacher(x, training=False)
        else:
            teacher_logits, *maps = self._teacher_view(x, training=False)
            step.teacher_activations = [ops.stop_gradient(m) for m in maps]
            step.activations = self._forward.activations
        step.teacher_logits = ops.stop_gradient(teacher_logits)
        return step

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        loss = super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
            training=training,
        )
        kept = self.kept_relus()
        self.relu_count.update_state(ops.stop_gradient(kept))
        cost = None
        if self.live_cost is not None:
            cost = self.live_cost()
            self.cost_value.update_state(
                ops.stop_gradient(cost) * self.cost_scale)
        ranges = measure_ranges(self.ranged, self._forward.site_inputs,
                                self.out_of_range)
        if not training or not self.terms:
            return loss
        step = self._step(y_pred, kept, cost, ranges)
        for term in self.terms:  # once per step across replicas
            loss = loss + scale_for_replicas(term(step))
        return loss


class BudgetTrainer(StudentTrainer):
    """AutoReP training: CE + distillation + budget hinge, via ``fit``.

    Args:
        student: a built model with ``ReLUSelector`` layers (see
            ``replace_relus``); it outputs logits.
        budget: the ReLU budget (anything ``parse_budget`` accepts), or a
            ``CostBudget`` (``keras_autorep.pi.cost_budget``: bytes or
            milliseconds under a protocol), trained on its predicted cost.
        teacher: optional all-ReLU model giving logits for distillation; it
            is never trained (and left trainable: see ``StudentTrainer``).
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
        if not selectors(student):
            raise ValueError(
                f"model {student.name!r} has no ReLUSelector layers; convert "
                "it with keras_autorep.replace_relus first"
            )
        count = count_relus(student)
        counter = LiveReLUCount(student, count)
        cost = None
        if isinstance(budget, CostBudget):
            cost = LiveCost(student, budget, count)
            hinge = CostHinge(budget, budget_weight)
        else:
            budget = parse_budget(budget, total=counter.total)
            if counter.fixed > budget:
                raise ValueError(
                    f"the model has {counter.fixed:,} ReLUs kept outside "
                    f"selectors, more than the budget of {budget:,}"
                )
            hinge = BudgetHinge(budget, counter.total, budget_weight)
        terms = _distillation(teacher, distillation_weight, temperature)
        super().__init__(student, teacher, [*terms, hinge], count=count,
                         cost=cost, **kwargs)
        self.hinge = hinge
        self.budget = budget
        self.total_relus = counter.total

    def budget_penalty(self, value):
        """The budget term for a kept count (a ReLU budget) or a predicted
        cost (a cost budget)."""
        return self.hinge.penalty(value)


class DistillationTrainer(StudentTrainer):
    """CE + knowledge distillation (+ attention transfer) via ``fit``.

    Args:
        student: a built model with ``ReLUSelector`` layers that outputs
            logits.
        teacher: optional all-ReLU model of the same architecture (logits);
            it is never trained. Needed for the distillation and AT terms.
        distillation_weight: weight of the distillation term (default 1).
        temperature: distillation temperature (default 4).
        attention_weight: weight of the attention-transfer term (default 0).
        terms: further loss terms (e.g. ``MaskL1``,
            ``ActivationMismatch``).

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
        terms=(),
        **kwargs,
    ):
        attention = AttentionTransfer(attention_weight)
        chosen = _distillation(teacher, distillation_weight, temperature)
        if attention.weight:
            chosen.append(attention)
        super().__init__(student, teacher, [*chosen, *terms], **kwargs)
