"""Loss terms of student training, composable in ``StudentTrainer``.

Each term is a callable ``term(step) -> scalar`` on a ``Step`` (the
tensors of one training step) with a ``weight``; the trainer adds
``sum(term(step))`` to the compiled loss (cross-entropy on logits) in
training steps. The terms:

* ``Distillation``: ``T^2 * KL(softmax(t / T) || softmax(s / T))``;
* ``AttentionTransfer``: attention transfer on the post-activation maps of
  every ReLU site (Zagoruyko & Komodakis 2017, as used by SENet). For a map
  ``x`` of shape ``(N, H, W, C)``: ``A(x) = sum_c x^2``, flattened to
  ``H * W`` and divided by its L2 norm; the term is the mean over sites and
  examples of ``||A(teacher) - A(student)||_2`` (a site without spatial axes
  uses ``x^2`` per unit);
* ``BudgetHinge``: AutoReP's ``lambda * max(0, kept / N - B / N)``;
* ``CostHinge``: the same on the predicted cost of a cost budget;
* ``MaskL1``: SNL's ``lambda * ||m||_1`` on ``SoftReLUMask`` masks, with
  ``lambda`` a variable a schedule can raise;
* ``ActivationMismatch``: no loss; accumulates SENet's per-position
  ``|teacher map - student map|``.

A term that needs state creates it in ``build(trainer)``.
"""

import dataclasses

import keras
from keras import ops

from keras_autorep.graph.sites import SOFT_MASK, sites


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


@dataclasses.dataclass
class Step:
    """The tensors of one training step that loss terms read.

    Attributes:
        logits: the student's logits.
        kept_relus: the student's kept ReLUs (differentiable through
            straight-through masks).
        teacher_logits: the teacher's logits (no gradient), if a teacher is
            given.
        activations: the student's post-activation maps at its selectors,
            when a term asks for them.
        teacher_activations: the teacher's maps at the matching sites.
        cost: the student's predicted PI cost under a cost budget
            (differentiable, ``keras_autorep.graph.LiveCost``), if trained
            on one.
    """

    logits: object
    kept_relus: object
    teacher_logits: object = None
    activations: tuple = ()
    teacher_activations: tuple = ()
    cost: object = None


def _check_weight(name, weight):
    if not weight >= 0:
        raise ValueError(f"{name} must be >= 0, got {weight!r}")
    return float(weight)


class Distillation:
    """``weight * T^2 * KL(softmax(t/T) || softmax(s/T))`` (needs a teacher).

    Args:
        weight: weight against the compiled loss (default 1).
        temperature: ``T`` (default 4).
    """

    needs_teacher = True
    needs_activations = False

    def __init__(self, weight=1.0, temperature=4.0):
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.weight = _check_weight("distillation weight", weight)
        self.temperature = float(temperature)

    def __call__(self, step):
        return self.weight * distillation_loss(
            step.teacher_logits, step.logits, self.temperature
        )


class AttentionTransfer:
    """``weight * AT`` on the post-activation maps (needs a teacher)."""

    needs_teacher = True
    needs_activations = True

    def __init__(self, weight=1.0):
        self.weight = _check_weight("attention weight", weight)

    def __call__(self, step):
        return self.weight * attention_transfer_loss(
            step.teacher_activations, step.activations
        )


class BudgetHinge:
    """AutoReP's budget term ``weight * max(0, kept / N - B / N)``.

    Args:
        budget: ``B``, the ReLU budget (an int).
        total: ``N``, the model's total ReLUs.
        weight: ``lambda`` (AutoReP's released scripts use 80-240).
    """

    needs_teacher = False
    needs_activations = False

    def __init__(self, budget, total, weight=10.0):
        self.budget = int(budget)
        self.total = int(total)
        self.weight = _check_weight("budget weight", weight)

    def penalty(self, kept):
        """The term for a kept-ReLU count."""
        excess = (kept - float(self.budget)) / float(max(1, self.total))
        return self.weight * ops.relu(excess)

    def __call__(self, step):
        return self.penalty(step.kept_relus)


class CostHinge:
    """The budget term of a cost budget: ``weight * max(0, (C - B) /
    C_relu)`` with ``C`` the student's predicted cost, ``B`` the budget and
    ``C_relu`` what the all-ReLU model costs (so ``lambda`` weighs a
    relative excess, as in ``BudgetHinge``).

    Args:
        budget: a ``CostBudget``.
        weight: ``lambda``.
    """

    needs_teacher = False
    needs_activations = False

    def __init__(self, budget, weight=10.0):
        self.amount = float(budget.amount)
        self.reference = float(max(budget.all_relu(), 1e-9))
        self.weight = _check_weight("budget weight", weight)

    def penalty(self, cost):
        """The term for a predicted cost."""
        return self.weight * ops.relu((cost - self.amount) / self.reference)

    def __call__(self, step):
        return self.penalty(step.cost)


class MaskL1:
    """SNL's ``lambda * sum |m|`` over the ``SoftReLUMask`` sites.

    ``lambda`` is the trainer variable ``l1_weight`` (created in ``build``),
    so a callback can raise it between epochs.
    """

    needs_teacher = False
    needs_activations = False

    def __init__(self, initial_weight=1e-5):
        self.initial_weight = _check_weight("l1 weight", initial_weight)
        self.masks = ()
        self.variable = None

    def build(self, trainer):
        self.masks = [site.layer for site in sites(trainer.student, (SOFT_MASK,))]
        if not self.masks:
            raise ValueError(
                f"model {trainer.student.name!r} has no SoftReLUMask layers"
            )
        self.variable = trainer.add_weight(
            name="l1_weight", shape=(), trainable=False,
            initializer=keras.initializers.Constant(self.initial_weight),
        )

    def __call__(self, step):
        l1 = ops.sum(ops.stack([ops.sum(ops.abs(m.mask)) for m in self.masks]))
        return ops.cast(self.variable, l1.dtype) * l1


class ActivationMismatch:
    """SENet's mask identification: accumulates, per site and position of
    the indicator (per channel: averaged over space), the batch mean of
    ``|teacher map - student map|``. Adds nothing to the loss."""

    needs_teacher = True
    needs_activations = True

    def __init__(self):
        self.variables = ()
        self.selectors = ()

    def build(self, trainer):
        self.selectors = trainer.sites
        self.variables = [
            trainer.add_weight(
                name=f"mismatch_{site.name}", shape=tuple(site.mask.shape),
                initializer="zeros", trainable=False,
                aggregation="mean",  # replicas: the global batch mean
            )
            for site in self.selectors
        ]

    def __call__(self, step):
        for variable, site, t, s in zip(
            self.variables, self.selectors, step.teacher_activations,
            step.activations,
        ):
            if site.granularity == "channel":
                axes = tuple(range(len(t.shape) - 1))
            else:
                axes = (0,)
            difference = ops.abs(
                ops.cast(t, "float32") - ops.cast(s, "float32")
            )
            variable.assign(variable + ops.mean(difference, axis=axes))
        return ops.zeros(())

    def scores(self):
        """``{site: accumulated mismatch}`` as NumPy arrays."""
        return {
            site.name: ops.convert_to_numpy(variable)
            for site, variable in zip(self.selectors, self.variables)
        }
