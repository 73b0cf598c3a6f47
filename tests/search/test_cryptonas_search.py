"""keras_autorep.search: the budgeted CryptoNAS architecture search
(keras-tuner): rejection before training, resuming."""

import numpy as np
import pytest

from keras_autorep.search import (
    CryptoNASHyperModel,
    OverBudgetError,
    make_tuner,
    trial_summaries,
)


class CountingHyperModel(CryptoNASHyperModel):
    """Records every ``fit`` keras-tuner makes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fitted = []

    def fit(self, hp, model, *args, **kwargs):
        self.fitted.append(dict(hp.values))
        return super().fit(hp, model, *args, **kwargs)


def test_search_rejects_over_budget_candidates_before_training(tmp_path):
    # Balanced width at 8x8, 2 stages, depth 1: 300 // 128 = 2; x2 -> 512
    # ReLUs, over the budget.
    hypermodel = CountingHyperModel(300, (8, 8, 3), 3, depths=(1,),
                                    width_multipliers=(1.0, 2.0), stages=2)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(32, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, 32)
    tuner = make_tuner(hypermodel, tmp_path, max_trials=10)
    tuner.search(x, y, validation_data=(x, y), epochs=1, batch_size=16,
                 verbose=0)
    trials = trial_summaries(tuner)
    assert len(trials) == 4  # the whole space: 2 multipliers x skip
    rejected = [t for t in trials if t["rejected"]]
    trained = [t for t in trials if not t["rejected"]]
    assert {t["values"]["width_multiplier"] for t in rejected} == {2.0}
    assert all(t["status"] == "FAILED" and t["relus"] == 512
               and "OverBudgetError" in t["message"] for t in rejected)
    assert all(t["status"] == "COMPLETED" and t["relus"] <= 300
               for t in trained)
    assert len(trained) == 2
    assert sorted(f["width_multiplier"] for f in hypermodel.fitted) \
        == [1.0, 1.0]  # no fit for a rejected candidate
    best = tuner.get_best_hyperparameters(1)[0]
    assert best.values["width_multiplier"] == 1.0
    with pytest.raises(OverBudgetError, match="has 512 ReLUs, over the "
                       "budget of 300: rejected before training"):
        hypermodel.build(
            tuner.oracle.trials[rejected[0]["trial_id"]].hyperparameters)

    # Resumable: a new tuner on the same folder reruns nothing.
    again = CountingHyperModel(300, (8, 8, 3), 3, depths=(1,),
                               width_multipliers=(1.0, 2.0), stages=2)
    make_tuner(again, tmp_path, max_trials=10).search(
        x, y, validation_data=(x, y), epochs=1, verbose=0)
    assert again.fitted == []


class InterruptedHyperModel(CountingHyperModel):
    """Raises ``KeyboardInterrupt`` inside the ``interrupt_at``-th fit, as
    a killed run would stop mid-trial."""

    def __init__(self, *args, interrupt_at=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.interrupt_at = interrupt_at

    def fit(self, hp, model, *args, **kwargs):
        if len(self.fitted) + 1 == self.interrupt_at:
            self.fitted.append(dict(hp.values))
            raise KeyboardInterrupt("killed in the middle of a trial")
        return super().fit(hp, model, *args, **kwargs)


def test_interrupted_search_resumes_where_it_stopped(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(32, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, 32)
    space = dict(budget=300, input_shape=(8, 8, 3), num_classes=3,
                 depths=(1,), width_multipliers=(0.5, 1.0), stages=2)
    fit = dict(validation_data=(x, y), epochs=1, batch_size=16, verbose=0)

    first = InterruptedHyperModel(**space, interrupt_at=2)
    with pytest.raises(KeyboardInterrupt, match="killed in the middle"):
        make_tuner(first, tmp_path, max_trials=3).search(x, y, **fit)
    assert len(first.fitted) == 2  # trial 0 done, trial 1 interrupted
    assert (tmp_path / "cryptonas" / "oracle.json").is_file()

    resumed = InterruptedHyperModel(**space)
    tuner = make_tuner(resumed, tmp_path, max_trials=3)
    tuner.search(x, y, **fit)
    # The finished trial is not trained again; the interrupted one is
    # retried first, then the search goes on to max_trials.
    assert len(resumed.fitted) == 2
    assert resumed.fitted[0] == first.fitted[1]
    assert first.fitted[0] not in resumed.fitted
    trials = trial_summaries(tuner)
    assert [t["status"] for t in trials] == ["COMPLETED"] * 3


def test_hypermodel_rejects_budgets_no_candidate_fits():
    with pytest.raises(ValueError, match="smallest balanced network"):
        CryptoNASHyperModel(100, (8, 8, 3), 3, depths=(1, 2))
