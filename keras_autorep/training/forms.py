"""Learned replacement forms, chosen by the training objective itself.

A selector with ``replacement="auto"`` holds one of the forms ``poly2``,
``poly1``, ``identity`` (its ``form_logits``). A gradient cannot choose it:
at trained coefficients the loss is flat to first order in the form's
coefficients, so the budget term alone would move the logits, to the
cheapest form whatever it does to accuracy. ``FormSearch`` instead
evaluates the change: every ``every`` training steps, each such site tries
each form on a few training batches kept aside, the other sites as they
are, and keeps the form that gives the lowest training objective (the
trainer's loss: cross-entropy, distillation and the budget term on the
predicted cost, in inference mode). Under a cost budget each form is tried
at the site's present cost: with as many ReLUs as the site could keep in
that form for what it costs now (its highest indicators), so that a
costlier form is judged by what it buys, not penalised by the budget
term for bytes the masks would give back. Forms the objective cannot tell
apart (at the start every position is kept, so every form scores the same)
go to the cheaper under a cost budget (as the masks are, then with the
site emptied), then to the more expressive: a site
that starts in a form costing more than a comparison would hold its ReLUs.
"""

import keras
import numpy as np
from keras import ops

from keras_autorep.costs import FORMS
from keras_autorep.graph.sites import selectors
from keras_autorep.training.fit import split_data


def learned_form_sites(model):
    """The selectors of ``model`` whose form is learned."""
    return [site for site in selectors(model) if site.replacement == "auto"]


def set_form(site, form):
    """Make ``form`` the learned site's form (its logit the largest)."""
    site.form_logits.assign(np.eye(len(FORMS), dtype="float32")[
        FORMS.index(form)])


def batches_of(data, count, batch_size=32):
    """``count`` ``(x, y)`` batches of ``data`` (arrays, a dataset or a
    ``PyDataset``), the first ones."""
    x, y = split_data(data)
    if y is not None:
        return [(x[i:i + batch_size], y[i:i + batch_size])
                for i in range(0, min(len(y), count * batch_size),
                               batch_size)]
    if isinstance(x, keras.utils.PyDataset):
        return [x[i][:2] for i in range(min(count, len(x)))]
    taken = []
    for batch in x:
        taken.append(tuple(batch[:2]))
        if len(taken) == count:
            break
    return taken


class FormSearch(keras.callbacks.Callback):
    """Every ``every`` steps, each learned-form site takes the form of the
    lowest training objective on ``batches`` batches of ``data`` (see the
    module doc).

    Args:
        data: training data (as ``fit_phase`` takes it).
        every: training steps between searches (and one at the start).
        batches: batches of ``data`` the objective is measured on.
        batch_size: batch size of array data.
    """

    def __init__(self, data, every=100, batches=2, batch_size=32):
        super().__init__()
        self.batches = batches_of(data, batches, batch_size)
        self.every = int(every)
        self.choices = []

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) % self.every == 0:
            self.search()

    def objective(self):
        """The trainer's loss on the kept batches, in inference mode."""
        trainer = self.model
        total = 0.0
        for x, y in self.batches:
            logits = trainer(x, training=False)
            total += float(ops.convert_to_numpy(trainer.compute_loss(
                x=x, y=y, y_pred=logits, training=True)))
        return total / len(self.batches)

    @staticmethod
    def rounded(score, scores):
        """``score`` rounded to a millionth of the scores' scale, so that
        forms whose objectives differ only by float noise tie."""
        scale = max(abs(value) for value in scores) or 1.0
        return round(score / scale, 6)

    def cost(self, site, form):
        """What ``site`` would cost in ``form`` under the trainer's cost
        budget, its masks as they are and then emptied (zeros under a
        ReLU-count budget)."""
        live = getattr(self.model, "live_cost", None)
        if live is None:
            return (0.0, 0.0)
        return (live.site_cost(site, form),
                live.site_cost(site, form, emptied=True))

    def trial_mask(self, site, form):
        """The mask ``site`` is tried with in ``form``: its own under a
        ReLU-count budget, else the highest indicators ``form`` affords
        at the site's present cost (``LiveCost.indicators_at_equal_cost``)."""
        live = getattr(self.model, "live_cost", None)
        mask = ops.convert_to_numpy(site.mask)
        if live is None:
            return mask
        keep = live.indicators_at_equal_cost(site, form)
        order = np.argsort(-ops.convert_to_numpy(site.alpha).ravel(),
                           kind="stable")
        trial = np.zeros(mask.size, mask.dtype)
        trial[order[:keep]] = 1.0
        return trial.reshape(mask.shape)

    def search(self):
        """One pass over the learned-form sites; the choices are recorded
        in ``choices``."""
        for site in learned_form_sites(self.model.student):
            scores = {}
            mask = ops.convert_to_numpy(site.mask)
            trials = {form: self.trial_mask(site, form) for form in FORMS}
            for form in FORMS:
                set_form(site, form)
                site.mask.assign(trials[form])
                scores[form] = self.objective()
            site.mask.assign(mask)
            best = min(FORMS, key=lambda form: (
                self.rounded(scores[form], scores.values()),
                self.cost(site, form), FORMS.index(form)))
            set_form(site, best)
            self.choices.append((site.name, best, scores))
