"""The CryptoNAS recipe end to end (``recipes/cryptonas.py``,
``keras_autorep.recipes.cli.cryptonas_main``) and the Pareto benchmark."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_autorep import count_relus
from keras_autorep.export import onnx_relu_elements

REPO = Path(__file__).resolve().parents[2]


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
    from keras_autorep.recipes.cli import cryptonas_main as main

    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines()
              if ": error: " in line]
    assert len(errors) == 1 and message in errors[0], errors
    assert not any(tmp_path.iterdir())  # nothing written


def test_recipe_rejects_a_budget_below_the_smallest_network(
        cifar10_archive, data_cache_dir, tmp_path, capsys):
    from keras_autorep.recipes.cli import cryptonas_main as main

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
    from keras_autorep.recipes.cli import cryptonas_main as main

    argv = ["--budget", "6144", "--quick", "--subset", "1000,300",
            "--trials", "2", "--epochs", "8", "--depths", "1",
            "--data-dir", str(cifar10_archive),
            "--cache-dir", str(data_cache_dir), "--out", str(tmp_path)]
    assert main(argv) == 0
    export_dir = tmp_path / "cifar10_cryptonas_6144_quick" / "1"
    report = json.loads((export_dir / "report.json").read_text())
    assert 0 < report["relu_count"] <= 6144
    # Held-out top-1 over chance (10 %) plus 7 points, as the other recipe
    # runs: seeds 0, 1, 2 measured 27.0, 23.3 and 23.7 % on these 300 test
    # images; the best candidate trained at learning rate 1e-9 scores 10 %.
    assert report["final_test_accuracy"]["top1"] >= 0.17, report[
        "final_test_accuracy"]
    assert onnx_relu_elements(export_dir / "model.onnx") == \
        report["relu_count"]
    assert len(report["search"]["trials"]) == 2
    # publish adds the PI cost report to what export_all writes.
    for name in ("saved_model.pb", "model.keras", "search.png",
                 "training.png", "pi_spec.json", "pi_cost.txt",
                 "relus_per_layer.png"):
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
                                                data_cache_dir, tmp_path,
                                                monkeypatch):
    import csv
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "pareto", REPO / "benchmarks" / "pareto.py")
    pareto = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pareto)
    argv = ["--data-dir", str(cifar10_archive),
            "--cache-dir", str(data_cache_dir), "--subset", "256,128",
            "--teacher-epochs", "1", "--epochs", "2",
            "--budgets", "10%,2.6%", "--methods", "autorep,cryptonas",
            "--protocol", "spu-semi2k", "--cost-budgets", "50%",
            "--images", "1", "--out", str(tmp_path)]
    pareto.main(argv)
    with open(tmp_path / "pareto.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["budget"]) for r in rows] == [
        ("teacher (all ReLU)", ""), ("teacher, same total epochs", ""),
        ("budget 0, all poly2", "0"),
        ("autorep", "7372"), ("cryptonas", "7372"),
        ("autorep", "1916"), ("cryptonas", "1916"),
    ]
    assert rows[0]["relu_count"] == rows[1]["relu_count"] == "73728"
    assert rows[2]["relu_count"] == "0"
    for row in rows[2:]:
        assert 0 <= int(row["relu_count"]) <= int(row["budget"])
        assert 0.0 <= float(row["accuracy"]) <= 1.0
    for row in rows[3::2]:  # AutoReP lands on the budget (per pixel: on it)
        assert int(row["relu_count"]) == int(row["budget"])
        assert int(row["searched"]) > 0
    # Below the smallest full-resolution balanced network the CryptoNAS
    # network gets a strided linear stem (ReLUs per channel / 4 or / 16).
    assert "stem stride 2" in rows[4]["notes"]
    assert "stem stride 4" in rows[6]["notes"]
    table = (tmp_path / "pareto.md").read_text()
    assert "| autorep | 7,372 |" in table and "| budget 0" in table
    # Priced and measured under SPU SEMI2K, the two baselines of the cost
    # axis and AutoReP on a cost budget added.
    with open(tmp_path / "pareto_spu-semi2k.csv", newline="") as f:
        priced = {r["method"]: r for r in csv.DictReader(f)}
    assert set(priced) == {r["method"] for r in rows} | {
        "budget 0, all identity", "autorep, cost budget (auto forms)"}
    teacher_mb = float(priced["teacher (all ReLU)"]["measured_mb"])
    cost_row = priced["autorep, cost budget (auto forms)"]
    budget_mb = float(cost_row["budget"].rstrip("MB"))
    assert budget_mb == pytest.approx(teacher_mb / 2, rel=0.01)
    assert float(cost_row["measured_mb"]) <= budget_mb
    assert float(priced["budget 0, all identity"]["measured_mb"]) \
        < float(priced["budget 0, all poly2"]["measured_mb"]) < teacher_mb
    for row in priced.values():  # SEMI2K's bytes and rounds: exact
        assert float(row["measured_mb"]) == pytest.approx(
            float(row["predicted_mb"]), rel=0.01)
        assert float(row["measured_rounds"]) == pytest.approx(
            float(row["predicted_rounds"]), rel=0.05)
        assert float(row["top1_agreement"]) == 1.0
    assert (tmp_path / "pareto_spu-semi2k.png").stat().st_size > 10_000
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
    # A rerun (e.g. after a kill) takes every finished cell as it was.

    def retrain(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    for name in ("teacher", "autorep", "cryptonas", "budget0",
                 "all_identity", "autorep_cost"):
        monkeypatch.setattr(pareto.Benchmark, name, retrain)
    monkeypatch.setattr(pareto, "measure", retrain)
    pareto.main(argv)
    with open(tmp_path / "pareto.csv", newline="") as f:
        assert list(csv.DictReader(f)) == rows
