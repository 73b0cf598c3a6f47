"""benchmarks/gpu.py: how it fits the paper schedule into a time budget,
and its CPU smoke run under JAX with TensorFlow hidden."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def gpu():
    with pytest.MonkeyPatch.context() as patch:  # keep the backend as is
        patch.setenv("KERAS_BACKEND", keras.backend.backend())
        spec = importlib.util.spec_from_file_location("gpu", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def test_every_stage_scales_by_one_factor(gpu):
    stages = ("teacher", "search", "finetune")
    assert gpu.PAPER == {"teacher": 400, "search": 200, "finetune": 20}
    assert gpu.scaled_epochs(stages, None, 10.0) == (gpu.PAPER, 1.0)
    paper_seconds = 10.0 * sum(gpu.PAPER[s] * gpu.COSTS[s] for s in stages)
    assert gpu.scaled_epochs(stages, 2 * paper_seconds, 10.0) == (
        gpu.PAPER, 1.0)
    epochs, factor = gpu.scaled_epochs(stages, 0.105 * paper_seconds, 10.0)
    assert factor == pytest.approx(0.105)
    assert epochs == {"teacher": 42, "search": 21, "finetune": 2}
    assert gpu.scaled_epochs(stages[1:], -5.0, 10.0) == (
        {"search": 1, "finetune": 1}, 0.0)


def test_cpu_smoke_run_needs_no_tensorflow(cifar10_archive, data_cache_dir,
                                           tmp_path):
    blocker = tmp_path / "no_tensorflow" / "tensorflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(
        "raise ImportError('TensorFlow is hidden for this test')\n")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--cpu-smoke",
         "--data-dir", str(cifar10_archive),
         "--cache-dir", str(data_cache_dir), "--out", str(out)],
        env={**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
             "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(REPO)])},
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in ("teacher", "search", "finetune", "hardened"):
        assert f"[{stage}] " in result.stdout
    report = json.loads((out / "report.json").read_text())
    stages = report["stages"]
    assert report["devices"] == ["cpu:0"] and report["budget"] == 12_900
    for stage in ("teacher", "search", "finetune"):
        assert stages[stage]["epochs"] == 1
        assert stages[stage]["images_per_second"] > 0
    assert stages["teacher"]["relu_count"] == 491_520  # ResNet-18
    assert stages["finetune"]["relu_count"] == 12_900  # landed
    assert stages["hardened"]["relu_count"] == 12_900
    assert all(0.0 <= record["top1"] <= 1.0 for record in stages.values())
    assert [d["factor"] for d in report["schedule_decisions"]] == [0.0, 0.0]
    assert keras.saving.load_model(out / "hardened.keras").output_shape == (
        None, 10)
