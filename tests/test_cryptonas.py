"""CryptoNAS: ReLU balancing, pruning, shuffling, budgeted search, recipe."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers

from keras_autorep import count_relus
from keras_autorep.cryptonas import (
    CryptoNASHyperModel,
    OverBudgetError,
    balanced_network,
    balanced_width,
    make_tuner,
    prunable_relus,
    prune_relus,
    shufflable_relus,
    shuffle_relus,
    trial_summaries,
)

REPO = Path(__file__).resolve().parent.parent


def stage_counts(model):
    """Counted ReLUs per stage of a balanced network."""
    counts = {}
    for row in count_relus(model).rows:
        stage = row.layer.split("_")[0]
        counts[stage] = counts.get(stage, 0) + row.total
    return counts


def outputs(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


# ------------------------------------------------------------------ balancing


@pytest.mark.parametrize("budget, depth, stages, stem_stride, width", [
    (1000, 1, 3, 1, 5),      # 1000 // (3 * 64)
    (1000, 2, 3, 1, 2),      # 1000 // (6 * 64)
    (1000, 1, 2, 2, 31),     # 1000 // (2 * 16): 4x4 first stage
    (192, 1, 3, 1, 1),       # exactly the smallest network
])
def test_balanced_network_fills_the_budget_with_equal_stages(
        budget, depth, stages, stem_stride, width):
    assert balanced_width(budget, depth, (8, 8, 3), stages, stem_stride) \
        == width
    model = balanced_network(budget, depth, input_shape=(8, 8, 3),
                             num_classes=3, stages=stages,
                             stem_stride=stem_stride)
    total = count_relus(model).total
    assert total <= budget
    per_stage = stage_counts(model)
    assert len(per_stage) == stages
    assert set(per_stage.values()) == {total // stages}
    assert total == stages * depth * width * (8 // stem_stride) ** 2
    # channels x4 at every halving of H and W
    relu = model.get_layer(f"stage{stages}_layer1_relu")
    assert relu.output.shape[-1] == width * 4 ** (stages - 1)


def test_balanced_network_skip_paths_hold_no_relus():
    model = balanced_network(1000, 2, input_shape=(8, 8, 3), num_classes=3)
    plain = balanced_network(1000, 2, input_shape=(8, 8, 3), num_classes=3,
                             skip=False)
    assert count_relus(model).total == count_relus(plain).total
    assert any(isinstance(layer, layers.Add) for layer in model.layers)
    assert prunable_relus(model, skip_paths=True) == {}


def test_balanced_network_rejects_budgets_and_shapes_it_cannot_meet():
    with pytest.raises(ValueError, match="below 192"):
        balanced_width(191, 1, (8, 8, 3))
    with pytest.raises(ValueError, match="cannot be divided"):
        balanced_width(10_000, 1, (10, 10, 3))
    with pytest.raises(ValueError, match="percentage"):
        balanced_width("10%", 1, (8, 8, 3))


# ------------------------------------------------------------------ pruning


def pruning_model():
    """relu -> maxpool -> relu, a 1x1-conv skip path with a ReLU, a ReLU
    after the merge of two ReLU outputs, and a fused ReLU before a global
    max-pool."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = layers.ReLU(name="relu1")(x)
    x = layers.MaxPooling2D(name="pool")(x)
    x = layers.ReLU(name="relu2")(x)                      # input >= 0
    skip = layers.Conv2D(4, 1, name="skip_conv")(x)
    skip = layers.BatchNormalization(name="skip_bn")(skip)
    skip = layers.ReLU(name="skip_relu")(skip)            # skip path
    main = layers.Conv2D(4, 3, padding="same", activation="relu",
                         name="main_conv")(x)
    x = layers.Add(name="add")([main, skip])
    x = layers.ReLU(name="relu3")(x)                      # relu + relu >= 0
    x = layers.Conv2D(4, 3, padding="same", activation="relu",
                      name="head_conv")(x)
    x = layers.GlobalMaxPooling2D(name="global_pool")(x)
    return keras.Model(inputs, layers.Dense(3, name="logits")(x))


def test_prune_removes_relus_of_nonnegative_inputs_exactly():
    model = pruning_model()
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32")
    assert prunable_relus(model) == {"relu2": "non-negative input",
                                     "relu3": "non-negative input"}
    pruned = prune_relus(model)
    before, after = count_relus(model).total, count_relus(pruned).total
    assert before - after == 4 * 4 * 4 * 2  # relu2 and relu3, 4x4x4 each
    np.testing.assert_array_equal(outputs(model, x), outputs(pruned, x))
    assert isinstance(pruned.get_layer("relu2"), layers.Identity)


def test_prune_skip_paths_removes_the_relu_after_a_1x1_conv():
    model = pruning_model()
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32")
    # Without skip_relu the merge can be negative, so relu3 stays.
    assert prunable_relus(model, skip_paths=True) == {
        "relu2": "non-negative input",
        "skip_relu": "skip path after 1x1 conv",
    }
    pruned = prune_relus(model, skip_paths=True)
    assert count_relus(model).total - count_relus(pruned).total == 2 * 64
    assert not np.allclose(outputs(model, x), outputs(pruned, x))


def test_prune_skip_paths_handles_fused_relus():
    inputs = keras.Input((8, 8, 3))
    skip = layers.Conv2D(4, 1, activation="relu", name="skip_conv")(inputs)
    main = layers.Conv2D(4, 3, padding="same", name="main_conv")(inputs)
    x = layers.Add()([main, skip])
    model = keras.Model(inputs, layers.Dense(2)(layers.Flatten()(x)))
    pruned = prune_relus(model, skip_paths=True)
    assert count_relus(pruned).total == 0
    assert pruned.get_layer("skip_conv").get_config()["activation"] \
        == "linear"
    np.testing.assert_array_equal(pruned.get_layer("skip_conv").get_weights()[0],
                                  model.get_layer("skip_conv").get_weights()[0])


# ------------------------------------------------------------------ shuffling


def test_shuffle_moves_relus_past_max_pooling_exactly():
    model = pruning_model()
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 3)).astype("float32")
    assert shufflable_relus(model) == {"relu1": "pool",
                                       "head_conv": "global_pool"}
    shuffled = shuffle_relus(model)
    # relu1: 8x8x4 -> 4x4x4; head_conv's fused ReLU: 4x4x4 -> 4
    assert count_relus(model).total - count_relus(shuffled).total \
        == (256 - 64) + (64 - 4)
    np.testing.assert_allclose(outputs(model, x), outputs(shuffled, x),
                               rtol=1e-6, atol=1e-6)
    order = [layer.name for layer in shuffled.layers]
    assert order.index("pool") < order.index("relu1")
    # relu2 now follows relu1 directly: pruning catches it.
    both = prune_relus(shuffled)
    assert count_relus(both).total < count_relus(shuffled).total
    np.testing.assert_allclose(outputs(model, x), outputs(both, x),
                               rtol=1e-6, atol=1e-6)


def test_shuffle_sequential_and_average_pooling():
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        layers.Conv2D(2, 3, padding="same", activation="relu", name="conv"),
        layers.AveragePooling2D(2, name="avg"),
        layers.Flatten(),
        layers.Dense(2),
    ])
    x = np.random.default_rng(2).normal(size=(4, 8, 8, 3)).astype("float32")
    assert shufflable_relus(model) == {}  # average pooling does not commute
    moved = shuffle_relus(model, exact=False)
    assert isinstance(moved, keras.Sequential)
    assert count_relus(moved).total == count_relus(model).total // 4
    assert not np.allclose(outputs(model, x), outputs(moved, x))


def test_shuffle_keeps_relus_with_other_consumers():
    inputs = keras.Input((8, 8, 3))
    x = layers.ReLU(name="relu")(layers.Conv2D(2, 3, padding="same")(inputs))
    pooled = layers.MaxPooling2D()(x)
    model = keras.Model(inputs, [pooled, x])  # the ReLU is also an output
    assert shufflable_relus(model) == {}
    # A pool shared with another branch must keep pooling there.
    pool = layers.MaxPooling2D(name="shared_pool")
    relu = layers.ReLU(name="relu")(layers.Conv2D(2, 3, padding="same")(inputs))
    other = layers.Conv2D(2, 3, padding="same")(inputs)
    merged = layers.Add()([pool(relu), pool(other)])
    model = keras.Model(inputs, merged)
    assert shufflable_relus(model) == {}
    assert count_relus(shuffle_relus(model)).total == 8 * 8 * 2


# ------------------------------------------------------------------ search


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
    with pytest.raises(OverBudgetError):
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
            raise KeyboardInterrupt
        return super().fit(hp, model, *args, **kwargs)


def test_interrupted_search_resumes_where_it_stopped(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(32, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, 32)
    space = dict(budget=300, input_shape=(8, 8, 3), num_classes=3,
                 depths=(1,), width_multipliers=(0.5, 1.0), stages=2)
    fit = dict(validation_data=(x, y), epochs=1, batch_size=16, verbose=0)

    first = InterruptedHyperModel(**space, interrupt_at=2)
    with pytest.raises(KeyboardInterrupt):
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


# ------------------------------------------------------------------ recipe


def test_recipe_script_rejects_a_bad_budget_with_exit_code_2():
    result = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "cryptonas.py"),
         "--budget", "abc"],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines()
              if ": error: " in line]
    assert len(errors) == 1, result.stderr
    assert "invalid ReLU budget 'abc'" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--budget", "10%"], "invalid ReLU budget '10%'"),
    (["--budget", "86k", "--data-dir", "/no/such/cifar10"],
     "--data-dir /no/such/cifar10: no such file or folder"),
    (["--budget", "86k", "--trials", "0"], "--trials must be >= 1"),
])
def test_recipe_rejects_bad_input_with_exit_code_2(args, message, tmp_path,
                                                    capsys):
    from keras_autorep.cryptonas.recipe import main

    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines()
              if ": error: " in line]
    assert len(errors) == 1 and message in errors[0], errors
    assert not any(tmp_path.iterdir())  # nothing written


def test_recipe_rejects_a_budget_below_the_smallest_network(
        cifar10_archive, data_cache_dir, tmp_path, capsys):
    from keras_autorep.cryptonas.recipe import main

    # depth 1, 3 stages at 32x32: at least 3 * 32 * 32 = 3,072 ReLUs.
    with pytest.raises(SystemExit) as exit_info:
        main(["--budget", "3000", "--depths", "1", "--subset", "100,50",
              "--data-dir", str(cifar10_archive),
              "--cache-dir", str(data_cache_dir), "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--budget: ReLU budget 3,000 is below 3,072" in err
    assert not (tmp_path / "runs").exists()


def test_recipe_searches_trains_and_exports_within_budget(
        cifar10_archive, data_cache_dir, tmp_path, capsys):
    from keras_autorep.cryptonas.recipe import main

    argv = ["--budget", "6144", "--quick", "--subset", "200,100",
            "--trials", "2", "--epochs", "1", "--depths", "1",
            "--data-dir", str(cifar10_archive),
            "--cache-dir", str(data_cache_dir), "--out", str(tmp_path)]
    assert main(argv) == 0
    export_dir = tmp_path / "cifar10_cryptonas_6144_quick" / "1"
    report = json.loads((export_dir / "report.json").read_text())
    assert report["relu_count"] <= 6144
    assert len(report["search"]["trials"]) == 2
    for name in ("saved_model.pb", "model.keras", "search.png",
                 "training.png"):
        assert (export_dir / name).exists(), name
    exported = keras.saving.load_model(export_dir / "model.keras")
    assert count_relus(exported).total == report["relu_count"]
    images = np.full((2, 32, 32, 3), 0.5, "float32")  # [0, 1] input
    assert exported.predict(images, verbose=0).shape == (2, 10)
    # Rerunning the same command finds the finished run.
    capsys.readouterr()
    assert main(argv) == 0
    assert "already finished" in capsys.readouterr().out


# ------------------------------------------------------------------ benchmark


def test_pareto_benchmark_writes_table_and_plot(cifar10_archive,
                                                data_cache_dir, tmp_path):
    import csv
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "pareto", REPO / "benchmarks" / "pareto.py")
    pareto = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pareto)
    pareto.main(["--data-dir", str(cifar10_archive),
                 "--cache-dir", str(data_cache_dir), "--subset", "256,128",
                 "--teacher-epochs", "1", "--epochs", "1",
                 "--budgets", "10%,2.6%", "--methods", "autorep,cryptonas",
                 "--out", str(tmp_path)])
    with open(tmp_path / "pareto.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["budget"]) for r in rows] == [
        ("teacher (all ReLU)", ""),
        ("autorep", "7372"), ("cryptonas", "7372"),
        ("autorep", "1916"), ("cryptonas", "1916"),
    ]
    assert rows[0]["relu_count"] == "73728"
    for row in rows[1:]:
        assert 0 < int(row["relu_count"]) <= int(row["budget"])
        assert 0.0 <= float(row["accuracy"]) <= 1.0
    # Below the smallest full-resolution balanced network the CryptoNAS
    # network gets a strided linear stem (ReLUs per channel / 4 or / 16).
    assert "stem stride 2" in rows[2]["notes"]
    assert "stem stride 4" in rows[4]["notes"]
    assert "| autorep | 7,372 |" in (tmp_path / "pareto.md").read_text()
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
