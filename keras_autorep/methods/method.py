"""A ReLU-reduction method as one unit: phases, student, schedule, record.

``Method`` is the registry's view of a method (``keras_autorep.methods
.METHODS``), what the recipes and the benchmarks orchestrate: the training
phases it runs (each a stage folder of a recipe run), the student it
trains, its learning-rate plan and the fields it adds to a report.
``TeacherMethod`` is the family that distils a student from an all-ReLU
teacher (AutoReP, SNL, SENet); CryptoNAS trains a searched network from
scratch instead (``keras_autorep.methods.cryptonas``).
"""

import dataclasses

from keras_autorep.graph import replace_relus
from keras_autorep.training.schedules import FINAL_LR, cosine_adam_schedule


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a method trains.

    Attributes:
        epochs: search (or identification) epochs; CryptoNAS: training
            epochs of the best candidate.
        finetune_epochs: fine-tuning epochs with the masks frozen.
        lr: peak learning rate, cosine-decayed.
        steps_per_epoch: optimizer steps per epoch.
        budget_weight: AutoReP's ``lambda`` on the budget term.
        activations: the activations whose elements the method selects.
        selector_options: further ``ReLUSelector`` arguments (AutoReP's
            stability options).
        replacement: what removed positions compute (``"poly2"``,
            ``"poly1"``, ``"identity"``, ``"auto"``); ``None``: the
            method's own (``Method.replacement``).
        seed: seed of random mask positions and of searches.
    """

    epochs: int
    finetune_epochs: int
    lr: float
    steps_per_epoch: int
    budget_weight: float = 10.0
    activations: tuple = ("relu",)
    selector_options: dict = dataclasses.field(default_factory=dict)
    replacement: str = None
    seed: int = 0

    def steps(self, epochs):
        """Optimizer steps of ``epochs`` (at least one epoch's)."""
        return max(1, epochs) * self.steps_per_epoch


class Method:
    """A ReLU-reduction method (subclass per method; see the module doc).

    Attributes:
        name: the registry name (``--method``).
        phases: the training phases, in order (stage folder names).
        uses_teacher: whether it starts from an all-ReLU teacher.
        default_allocation: the per-layer budget split it uses unless told
            otherwise (``None``: it sizes its own network).
        selects: the activations it can select (``None``: any of
            ``keras_autorep.layers.activations``).
        optimizer: the optimizer of its schedule, in words.
        replacement: what its removed positions compute by default.
    """

    name = None
    phases = ()
    uses_teacher = True
    default_allocation = "free"
    selects = None
    optimizer = "Adam"
    replacement = "identity"

    def check(self, allocation, activations):
        """Raise ``ValueError`` (one line) when the method cannot run with
        this allocation or these selected activations."""
        if self.selects is not None and tuple(activations) != self.selects:
            noun = ("ReLUs" if self.selects == ("relu",)
                    else "/".join(self.selects) + " elements")
            raise ValueError(
                f"--method {self.name} selects {noun} only; --activations "
                f"{','.join(activations)} needs --method autorep")

    def default_finetune_epochs(self, epochs):
        """Fine-tuning epochs when not given: as many as the search's."""
        return epochs

    def phase_epochs(self, plan):
        """``{phase: epochs}``: the first phase ``plan.epochs``, the
        second (fine-tuning) ``plan.finetune_epochs``."""
        return dict(zip(self.phases, (plan.epochs, plan.finetune_epochs)))

    def learning_rates(self, plan):
        """``{phase: learning rate}``: by default one Adam schedule, cosine
        from ``plan.lr`` to ``FINAL_LR`` over the longer phase, for every
        phase."""
        schedule = cosine_adam_schedule(
            plan.lr, plan.steps(max(plan.epochs, plan.finetune_epochs)))
        return {phase: schedule for phase in self.phases}

    def record(self, plan):
        """The method's fields of a run report."""
        return dict(method=self.name, phases=list(self.phases),
                    epochs=plan.epochs, finetune_epochs=plan.finetune_epochs,
                    lr=plan.lr, final_lr=FINAL_LR, optimizer=self.optimizer,
                    replacement=plan.replacement or self.replacement)


class TeacherMethod(Method):
    """A method that trains a selector student of an all-ReLU teacher.

    Subclasses name their training function (``train_function``: the
    public ``train_autorep``, ``train_snl`` or ``train_senet``) and the
    options it takes from a ``Plan`` (``options``).
    """

    needs_counts = False

    def check(self, allocation, activations):
        super().check(allocation, activations)
        if self.needs_counts and allocation == "free":
            raise ValueError(
                f"--method {self.name} needs per-layer ReLU counts: "
                "--allocation sensitivity, uniform or tuned")

    def student(self, teacher, activations=("relu",), replacement=None):
        """The untrained selector student of ``teacher`` (what a per-layer
        allocation or a cost budget is computed for)."""
        return replace_relus(teacher, activations=activations,
                             replacement=replacement or self.replacement)

    @staticmethod
    def train_function(*args, **kwargs):
        raise NotImplementedError

    def options(self, plan):
        """Keyword arguments of ``train_function`` from ``plan`` (beyond
        epochs, data, counts and the fit options)."""
        return dict(lr=self.learning_rates(plan)[self.phases[0]],
                    replacement=plan.replacement or self.replacement)

    def train(self, teacher, budget, train_data, val_data=None, *, plan,
              counts=None, metrics=None, callbacks=None, verbose="auto",
              **options):
        """The trained student (masks frozen within ``budget``);
        ``harden(student, budget)`` gives the inference model.

        Args:
            teacher: the all-ReLU teacher (logits).
            budget: the ReLU budget.
            train_data, val_data: as the training functions take them.
            plan: the ``Plan``.
            counts: optional per-site allocation ``{site: ReLUs}``.
            metrics: compiled metrics.
            callbacks: a list, or ``phase -> list``.
            verbose: ``fit`` verbosity.
            **options: further arguments of ``train_function`` (e.g.
                SENet's ``sensitivity_data``).
        """
        return self.train_function(
            teacher, budget, train_data, val_data, counts=counts,
            epochs=plan.epochs, finetune_epochs=plan.finetune_epochs,
            metrics=metrics, callbacks=callbacks, verbose=verbose,
            **self.options(plan), **options)
