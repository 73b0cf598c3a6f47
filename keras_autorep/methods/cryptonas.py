"""CryptoNAS (Ghodsi et al., NeurIPS 2020) as a registry unit.

No teacher and no selectors: the budget sizes ReLU-balanced networks
(``keras_autorep.architectures.cryptonas``), a keras-tuner random search
over depth, width multiplier and skip connections picks one
(``keras_autorep.search``; candidates over the budget are rejected before
any training), and the best candidate trains from scratch with SGD,
momentum and cosine decay to 0. Phases: ``search`` and ``train``.
"""

import keras

from keras_autorep.adapters.keras_tuner_roles import tuner_role
from keras_autorep.methods.method import Method
from keras_autorep.search import (
    CryptoNASHyperModel,
    make_tuner,
    trial_summaries,
)
from keras_autorep.training.schedules import MOMENTUM, cosine_sgd


class CryptoNAS(Method):
    """CryptoNAS: ``hypermodel`` (the search space of a budget),
    ``search`` (the keras-tuner search, its best hyperparameters) and
    ``train`` (the best candidate from scratch)."""

    name = "cryptonas"
    phases = ("search", "train")
    uses_teacher = False
    default_allocation = None
    selects = ("relu",)
    optimizer = f"SGD, momentum {MOMENTUM}"

    def phase_epochs(self, plan):
        """``{"train": plan.epochs}`` (the search's candidates train for
        their own epochs, in keras-tuner's trials)."""
        return {"train": plan.epochs}

    def hypermodel(self, budget, input_shape, num_classes, plan, *,
                   depths, stem_stride, weight_decay, preprocessing=None,
                   search_steps=1):
        """The ``CryptoNASHyperModel`` of ``budget``; its candidates train
        with the method's SGD schedule over ``search_steps`` steps.

        Raises:
            ValueError: not even the smallest candidate fits the budget.
        """
        return CryptoNASHyperModel(
            budget, input_shape, num_classes, depths=depths,
            stem_stride=stem_stride, weight_decay=weight_decay,
            preprocessing=preprocessing,
            optimizer=lambda: cosine_sgd(plan.lr, search_steps))

    def search(self, hypermodel, train_data, val_data, directory, *,
               trials, epochs, seed):
        """Run (or resume) the search in ``directory/search``.

        Returns:
            ``(best hyperparameters, record)``; ``(None, None)`` in a
            keras-tuner worker (its chief reports the search).

        Raises:
            RuntimeError: no candidate finished training.
        """
        tuner = make_tuner(hypermodel, directory, "search",
                           max_trials=trials, seed=seed)
        tuner.search(train_data, validation_data=val_data, epochs=epochs,
                     shuffle=False,  # the pipeline does
                     verbose=0)
        if tuner_role() == "worker":
            return None, None
        trials = trial_summaries(tuner)
        best = tuner.get_best_hyperparameters(1)
        if not best:
            raise RuntimeError(
                "no candidate finished training; trial messages: "
                + "; ".join(str(t["message"]) for t in trials))
        return best[0], dict(
            trials=trials, best=dict(best[0].values),
            architecture=hypermodel.architecture(best[0]),
            rejected=sum(t["rejected"] for t in trials))

    def train(self, hypermodel, best, train_data, val_data=None, *, plan,
              metrics=None, callbacks=None, verbose="auto"):
        """The best candidate trained from scratch for ``plan.epochs``.

        Args:
            hypermodel: the search's ``CryptoNASHyperModel``.
            best: the best hyperparameters.
            train_data, val_data: datasets.
            plan: the ``Plan`` (epochs, lr, steps per epoch, seed).
            metrics: compiled metrics (default ``["accuracy"]``).
            callbacks: ``fit`` callbacks.
            verbose: ``fit`` verbosity.
        """
        keras.utils.set_random_seed(plan.seed)
        model = hypermodel.network(best)
        model.compile(
            optimizer=cosine_sgd(plan.lr, plan.steps(plan.epochs)),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=list(metrics or ["accuracy"]))
        model.fit(train_data, epochs=plan.epochs, validation_data=val_data,
                  callbacks=callbacks, shuffle=False,  # the pipeline does
                  verbose=verbose)
        return model

    def record(self, plan):
        return dict(method=self.name, phases=list(self.phases),
                    epochs=plan.epochs, lr=plan.lr, final_lr=0.0,
                    optimizer=self.optimizer)
