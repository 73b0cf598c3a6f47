"""Cost budgets: a model's predicted cost, per site, kept count and form,
is the calibrated prediction of its exported graph; landing, hardening
and training on a budget in bytes or milliseconds."""

import keras
import numpy as np
import pytest

import keras_autorep as ka
from keras_autorep.costs import NETWORKS, FORMS, predict
from keras_autorep.export import export_onnx
from keras_autorep.graph import land_masks, set_masks, site_forms
from keras_autorep.pi import cost_budget, onnx_workload
from pi_models import teacher

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="a cost budget prices the exported ONNX graph (TensorFlow)")


def student_with(forms, keep, seed=0):
    """The pi_models teacher's ``auto`` student, each site in its form of
    ``forms`` (cycled) keeping about ``keep[i]`` of its positions."""
    rng = np.random.default_rng(seed)
    student = ka.replace_relus(teacher(), replacement="auto")
    for number, selector in enumerate(ka.selectors(student)):
        form = forms[number % len(forms)]
        logits = np.zeros(len(FORMS), "float32")
        logits[FORMS.index(form)] = 2.0
        selector.form_logits.assign(logits)
        mask = rng.random(selector.mask.shape) < keep[number % len(keep)]
        selector.mask.assign(mask.astype("float32"))
    return student


def kept_elements(model):
    count = ka.count_relus(model)
    return {row.layer: row.kept for row in count.rows}


@pytest.mark.parametrize("protocol", ["crypten", "spu-semi2k",
                                      "spu-cheetah"])
def test_predicted_cost_is_the_exported_graphs(tmp_path, protocol):
    student = student_with(FORMS, keep=(0.0, 0.3, 1.0, 0.0, 0.5))
    for metric_text, network in (("1GB", None), ("1000s", NETWORKS["wan"])):
        budget = cost_budget(metric_text, student, protocol, network)
        kept, forms = kept_elements(student), site_forms(student)
        assert set(budget.sites) == set(forms)
        hardened = ka.harden(student)
        export_onnx(hardened, tmp_path / "model.onnx", batch_size=1)
        prediction = predict(onnx_workload(tmp_path / "model.onnx"),
                             protocol)
        measured_graph = (prediction.bytes if network is None
                          else prediction.latency_ms(network))
        assert budget.cost({name: kept[name] for name in forms}, forms) \
            == pytest.approx(measured_graph, rel=1e-9)


def test_landing_and_hardening_on_a_cost_budget():
    student = student_with(("poly1", "identity"), keep=(1.0,))
    relu = cost_budget("1GB", student, "spu-cheetah").all_relu()
    budget = cost_budget(f"{relu * 0.6 / 1e6:.4f}MB", student, "spu-cheetah")
    masks = land_masks(student, budget)
    set_masks(student, masks)
    cost = budget.cost(kept_elements(student), site_forms(student))
    # Within 97-100 % of the budget, 1 % below it for the calibration.
    assert 0.97 * budget.amount <= cost <= 0.99 * budget.amount
    # harden only trims: from all-ReLU masks down within the budget.
    for selector in ka.selectors(student):
        selector.mask.assign(np.ones(selector.mask.shape, "float32"))
    hardened = ka.harden(student, budget)
    kept = {row.layer: row.kept for row in ka.count_relus(hardened).rows}
    assert budget.cost(kept, site_forms(student)) <= budget.amount


def test_degree_two_cannot_meet_a_cheetah_budget_below_all_relu():
    student = student_with(("poly2",), keep=(1.0,))
    resolved = cost_budget("1GB", student, "spu-cheetah")
    tight = f"{resolved.all_relu() * 0.8 / 1e6:.4f}MB"
    with pytest.raises(ValueError, match="below the least model"):
        cost_budget(tight, student, "spu-cheetah", forms=("poly2",))
    budget = cost_budget(tight, student, "spu-cheetah")  # other forms: fine
    with pytest.raises(ValueError, match="removing ReLUs cannot bring"):
        land_masks(student, budget)


@pytest.mark.parametrize("budget, protocol, message", [
    ("12.9k", "crypten", "is not a cost budget"),
    ("3MB", "spdz", "unknown protocol 'spdz'"),
    ("10B", "crypten", "below the least model"),
])
def test_bad_cost_budgets_are_one_line_errors(budget, protocol, message):
    with pytest.raises(ValueError, match=message):
        cost_budget(budget, ka.replace_relus(teacher()), protocol)


def test_training_on_a_cost_budget_logs_and_lowers_the_cost():
    keras.utils.set_random_seed(0)
    model = teacher()
    student = ka.replace_relus(model, replacement="poly1")
    budget = cost_budget("1GB", student, "spu-semi2k")
    target = f"{(budget.fixed + 0.3 * (budget.all_relu() - budget.fixed)) / 1e6:.4f}MB"
    budget = cost_budget(target, student, "spu-semi2k")
    trainer = ka.BudgetTrainer(student, budget, teacher=model,
                               budget_weight=100.0)
    trainer.compile(optimizer=keras.optimizers.Adam(5e-2),
                    loss=keras.losses.SparseCategoricalCrossentropy(
                        from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.random((64, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, 64)
    history = trainer.fit(x, y, batch_size=16, epochs=3, verbose=0).history
    costs = history["cost_mb"]
    # From all ReLU (every mask 1), the hinge pulls the cost down.
    assert costs[-1] < costs[0] < budget.all_relu() / 1e6
    assert costs[-1] * 1e6 == pytest.approx(
        budget.cost(kept_elements(student), site_forms(student)), rel=1e-3)
