"""The method registry: each method a unit that knows its phases, student,
learning-rate plan and report fields; the recipes' one settings record."""

import keras
import numpy as np
import pytest

from keras_autorep.graph import selectors
from keras_autorep.layers import ReLUSelector
from keras_autorep.methods import METHODS, Plan
from keras_autorep.recipes.cli import build_parser
from keras_autorep.recipes.settings import Settings, UsageError

PLAN = Plan(epochs=10, finetune_epochs=2, lr=4e-3, steps_per_epoch=5,
            budget_weight=50.0, activations=("relu",), seed=3)


def test_registry_names_every_method_with_its_phases():
    assert {name: (m.phases, m.uses_teacher, m.default_allocation)
            for name, m in METHODS.items()} == {
        "autorep": (("search", "finetune"), True, "free"),
        "snl": (("search", "finetune"), True, "free"),
        "senet": (("identify", "finetune"), True, "sensitivity"),
        "cryptonas": (("search", "train"), False, None),
    }


def test_autorep_plans_a_shorter_slower_fine_tuning():
    autorep = METHODS["autorep"]
    assert autorep.default_finetune_epochs(200) == 20
    rates = autorep.learning_rates(PLAN)
    assert float(rates["search"](0)) == pytest.approx(4e-3)
    assert float(rates["finetune"](0)) == pytest.approx(1e-3)
    # Cosine over the phase's own steps, down to the final rate.
    assert float(rates["search"](50)) == pytest.approx(1e-5)
    assert float(rates["finetune"](10)) == pytest.approx(1e-5)
    record = autorep.record(PLAN)
    assert (record["finetune_lr"], record["budget_weight"]) == (1e-3, 50.0)
    options = autorep.options(PLAN)
    assert (options["budget_weight"], options["seed"],
            options["activations"]) == (50.0, 3, ("relu",))


@pytest.mark.parametrize("name", ["snl", "senet"])
def test_peer_methods_share_one_schedule_over_the_longer_phase(name):
    method = METHODS[name]
    rates = method.learning_rates(PLAN)
    assert rates[method.phases[0]] is rates["finetune"]
    assert float(rates["finetune"](50)) == pytest.approx(1e-5)
    assert method.default_finetune_epochs(7) == 7
    assert method.phase_epochs(PLAN) == {method.phases[0]: 10, "finetune": 2}
    assert "budget_weight" not in method.record(PLAN)


def test_each_method_builds_its_own_student():
    teacher = keras.Sequential([
        keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 1),
        keras.layers.ReLU(), keras.layers.Flatten(), keras.layers.Dense(3)])
    autorep = selectors(METHODS["autorep"].student(teacher))
    snl = selectors(METHODS["snl"].student(teacher))
    assert len(autorep) == len(snl) == 1
    assert isinstance(autorep[0], ReLUSelector)
    assert (autorep[0].fit, autorep[0].degree) == ("dapa", 2)
    assert (snl[0].fit, snl[0].degree) == ("identity", 1)


def resolve(*argv, dataset="cifar10", method="autorep"):
    return Settings.resolve(dataset, vars(build_parser(dataset, method)
                                          .parse_args(argv)))


def test_one_settings_record_for_every_method():
    cryptonas = resolve("--budget", "6144", "--quick", dataset=None,
                        method="cryptonas")
    assert (cryptonas.trials, cryptonas.search_epochs, cryptonas.epochs,
            cryptonas.lr, cryptonas.subset) == (4, 1, 4, 0.1, (5_000, 1_000))
    assert cryptonas.model is None and cryptonas.teacher_epochs is None
    assert cryptonas.default_run_name(None) == "cifar10_cryptonas_6144_quick"
    autorep = resolve("--budget", "1k")
    assert autorep.trials is None and autorep.depths is None
    assert (autorep.replacement, autorep.network, autorep.is_cost) == (
        "poly2", "lan", False)
    snl = resolve("--budget", "1k", "--method", "snl")
    assert snl.replacement == "identity"
    cost = resolve("--budget", "250ms", "--protocol", "spu-cheetah",
                   "--network", "wan", "--replacement", "auto")
    assert cost.is_cost and cost.network_parameters.rtt_ms == 50.0
    # The same command line can name either family.
    same = resolve("--budget", "6144", "--method", "cryptonas", "--quick")
    assert same == cryptonas
    for argv, message in [
            (("--budget", "1k", "--trials", "3"),
             "--trials does not apply to --method autorep"),
            (("--budget", "1k", "--method", "cryptonas", "--teacher-epochs",
              "3"), "--teacher-epochs does not apply to --method cryptonas"),
            (("--budget", "10%", "--method", "cryptonas"),
             "invalid ReLU budget '10%': expected a count"),
            (("--budget", "1k", "--method", "snl", "--activations", "silu"),
             "--method snl selects ReLUs only"),
            (("--budget", "1k", "--replacement", "auto"),
             "--replacement auto learns each site's form under a cost"),
            (("--budget", "3.7MB", "--protocol", "crypten", "--method",
              "snl"), "--method snl takes a ReLU count"),
            (("--budget", "3.7MB", "--protocol", "crypten", "--allocation",
              "uniform"), "a cost budget trains with --allocation free"),
            (("--budget", "250ms", "--protocol", "crypten", "--network",
              "moon"), "--network: invalid network 'moon'")]:
        with pytest.raises(UsageError) as error:
            resolve(*argv)
        assert message in str(error.value), (argv, str(error.value))


def test_plan_and_student_reach_the_training_function(monkeypatch):
    calls = []
    senet = METHODS["senet"]
    monkeypatch.setattr(type(senet), "train_function",
                        staticmethod(lambda *a, **k: calls.append((a, k))))
    senet.train("teacher", 100, "data", plan=PLAN, counts={"a": 1},
                sensitivity_data="images")
    (args, kwargs), = calls
    assert args == ("teacher", 100, "data", None)
    assert (kwargs["epochs"], kwargs["finetune_epochs"], kwargs["seed"],
            kwargs["counts"], kwargs["sensitivity_data"]) == (
                10, 2, 3, {"a": 1}, "images")
    assert np.isclose(float(kwargs["lr"](0)), 4e-3)
