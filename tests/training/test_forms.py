"""FormSearch: learned replacement forms chosen by the training objective
(cross-entropy, distillation and the budget term on the predicted cost)."""

import keras
import numpy as np
import pytest

import keras_autorep as ka
from keras_autorep.costs import FORMS
from keras_autorep.graph import site_forms
from keras_autorep.pi import cost_budget
from keras_autorep.training import FormSearch
from keras_autorep.training.forms import batches_of, set_form
from tiny_models import LOSS, tiny_data, trained_teacher

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="a cost budget prices the exported ONNX graph (TensorFlow)")


def search_on(budget_text, protocol, kept=0.0):
    data = tiny_data()
    teacher = trained_teacher(data)
    student = ka.replace_relus(teacher, replacement="auto")
    for selector in ka.selectors(student):  # every position replaced
        selector.mask.assign(np.full(selector.mask.shape, kept, "float32"))
    budget = cost_budget(budget_text, student, protocol)
    trainer = ka.BudgetTrainer(student, budget, teacher=teacher,
                               budget_weight=100.0)
    trainer.compile(optimizer="adam", loss=LOSS)
    search = FormSearch(data, every=1, batches=2)
    search.set_model(trainer)
    search.search()
    return search, budget


def test_each_site_keeps_the_form_of_the_lowest_objective():
    search, _ = search_on("1GB", "crypten")  # the budget term is inactive
    assert [name for name, _, _ in search.choices] == [
        "conv1_relu", "relu2"]
    student = search.model.student
    chosen = site_forms(student)
    for name, best, scores in search.choices:
        assert chosen[name] == best
        assert scores[best] == pytest.approx(min(scores.values()), rel=1e-6)
    # The trials' masks do not stay: the masks are those training left.
    for selector in ka.selectors(student):
        assert not np.any(keras.ops.convert_to_numpy(selector.mask))


def test_forms_are_tried_at_the_sites_present_cost():
    search, budget = search_on("1GB", "spu-cheetah", kept=0.5)
    student = search.model.student
    live = search.model.live_cost
    for selector in ka.selectors(student):
        selector.mask.assign(np.ones(selector.mask.shape, "float32"))
        selector.mask[0].assign(0.0)  # all but one position kept
        set_form(selector, "poly1")
        present = live.site_cost(selector, "poly1")
        unit = selector.relus_per_indicator
        for form in ("poly1", "identity"):
            trial = search.trial_mask(selector, form)
            site = budget.sites[selector.name]
            kept = int(trial.sum()) * unit
            assert site.cost(kept, form) <= present * (1 + 1e-9)
            if kept < site.total:  # one more indicator would cost more
                assert site.cost(kept + unit, form) > present
        # A degree-2 element costs more than a comparison under CHEETAH:
        # no count of it fits the present cost; it is tried at its
        # cheapest, every ReLU kept.
        assert search.trial_mask(selector, "poly2").all()
        # Kept positions are the highest indicators.
        alpha = keras.ops.convert_to_numpy(selector.alpha).ravel()
        trial = search.trial_mask(selector, "identity").ravel() > 0
        if trial.any() and not trial.all():
            assert alpha[trial].min() >= alpha[~trial].max()


def test_a_tight_budget_makes_cheaper_forms_win():
    # Under CHEETAH a degree-2 element costs more than a comparison: with
    # every position replaced, only lines and identities keep to a budget
    # near the model's floor.
    loose, _ = search_on("1GB", "spu-cheetah")
    tight, budget = search_on("1GB", "spu-cheetah")
    floor = budget.floor()
    tight_budget = cost_budget(f"{floor * 1.05 / 1e6:.6f}MB",
                               tight.model.student, "spu-cheetah")
    trainer = ka.BudgetTrainer(tight.model.student, tight_budget,
                               teacher=tight.model.teacher,
                               budget_weight=100.0)
    trainer.compile(optimizer="adam", loss=LOSS)
    tight.set_model(trainer)
    for selector in ka.selectors(trainer.student):
        set_form(selector, "poly2")
    tight.search()
    assert "poly2" not in site_forms(trainer.student).values()
    assert tight_budget.cost({name: 0 for name in tight_budget.sites},
                             site_forms(trainer.student)) <= tight_budget.amount


def test_forms_the_objective_cannot_tell_apart_go_to_the_cheaper():
    # Every position kept: each form scores the same. Under CHEETAH a
    # degree-2 element costs more than a comparison, so starting there
    # would make removing ReLUs raise the cost.
    search, budget = search_on("1GB", "spu-cheetah", kept=1.0)
    for name, best, scores in search.choices:
        assert len({round(v, 6) for v in scores.values()}) == 1
        costs = {form: search.cost(search.model.student.get_layer(name),
                                   form) for form in FORMS}
        assert best != "poly2" and costs[best] == min(costs.values())
    # Under a ReLU count the forms cost nothing: the most expressive wins.
    data = tiny_data()
    student = ka.replace_relus(trained_teacher(data), replacement="auto")
    trainer = ka.BudgetTrainer(student, 100, budget_weight=1.0)
    trainer.compile(optimizer="adam", loss=LOSS)
    count_search = FormSearch(data, every=1, batches=2)
    count_search.set_model(trainer)
    count_search.search()
    assert set(site_forms(student).values()) == {"poly2"}


def test_batches_of_arrays_and_datasets():
    x, y = tiny_data(n=100)
    assert [len(b[1]) for b in batches_of((x, y), 3, batch_size=32)] == [
        32, 32, 32]
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    taken = batches_of(dataset, 2)
    assert len(taken) == 2 and taken[0][0].shape[0] == 16
