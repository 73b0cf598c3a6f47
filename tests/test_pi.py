"""PI cost model and the ``python -m keras_autorep.report`` command."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_autorep as ka
from keras_autorep import pi
from keras_autorep.export import write_pi_spec
from keras_autorep.pi import cost_report, estimate_cost
from keras_autorep.report import main


def tiny_model():
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, padding="same"),
            keras.layers.ReLU(name="stem_relu_uncounted"),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(5),
        ]
    )


def hardened(model, keep):
    selected = ka.replace_relus(model)
    for selector in ka.selectors(selected):
        mask = np.zeros(selector.mask.shape, "float32").ravel()
        mask[: int(mask.size * keep)] = 1.0
        selector.mask.assign(mask.reshape(selector.mask.shape))
    return ka.harden(selected)


@pytest.fixture(scope="module")
def models():
    original = tiny_model()
    return original, hardened(original, keep=0.25)


def test_constants_are_the_cited_figures():
    assert pi.GC_SERVER_GARBLE_MS_PER_RELU == 0.102
    assert pi.GC_SERVER_EVAL_MS_PER_RELU == 0.052
    assert pi.GC_CLIENT_EVAL_MS_PER_RELU == (0.28, 0.35)
    assert pi.GC_CLIENT_STORAGE_BYTES_PER_RELU == 18_248
    assert pi.POLYNOMIAL_TO_RELU_RATIO == pytest.approx(0.03 / 13.6)
    sources = " ".join(pi.SOURCES)
    assert "Garimella" in sources and "ASPLOS 2023" in sources
    assert "AMD EPYC 7502" in sources
    assert "PASNet" in sources and "units undocumented" in sources


def test_estimate_cost_is_linear_in_the_counts():
    cost = estimate_cost(1000, 2000)
    ratio = 0.03 / 13.6
    assert cost.online_ms == pytest.approx((1000 + 2000 * ratio) * 0.052)
    assert cost.garbling_ms == pytest.approx(1000 * 0.102)
    assert cost.client_storage_bytes == 1000 * 18_248
    assert cost.online_client_ms == pytest.approx(
        ((1000 + 2000 * ratio) * 0.28, (1000 + 2000 * ratio) * 0.35)
    )
    assert estimate_cost(0).online_ms == 0.0
    with pytest.raises(ValueError, match=">= 0"):
        estimate_cost(-1)


def test_cost_report_against_given_original(models):
    original, model = models
    count = ka.count_relus(model)
    assert count.uncounted == 256 and count.kept == 64
    report = cost_report(model, original)
    assert report.exported.relus_counted == 64
    assert report.exported.relus == 64 + 256
    assert report.exported.polynomials == 256 - 64
    assert report.original.relus == 512 and report.original.polynomials == 0
    assert report.relu_reduction == pytest.approx(512 / 320)
    text = report.text()
    assert "ratio: 4.0x fewer counted ReLUs (1.6x fewer computed)" in text
    assert "communication 1.6x smaller" in text
    (line,) = [x for x in text.splitlines() if x.startswith("communica")]
    assert line.split()[-2:] == ["5.84", "9.34"]  # 320, 512 x 18,248 B
    assert "online 0.052 ms (server eval)" in text and "18,248 B" in text
    assert "Garimella" in text and "PASNet" in text
    assert json.loads(json.dumps(report.to_dict()))["exported"]["relus"] == 320


def test_cost_report_default_original_is_all_relu(models):
    original, model = models
    report = cost_report(model)
    assert report.original == cost_report(model, original).original
    assert report.original.polynomials == 0
    assert report.original.relus_counted == ka.count_relus(model).total


def test_cost_report_with_no_relu_left():
    model = keras.Sequential(
        [
            keras.Input((4, 4, 2)),
            ka.PolynomialActivation(),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    report = cost_report(model)
    assert report.exported.relus == 0 and report.exported.polynomials == 32
    assert report.relu_reduction == float("inf")
    assert report.to_dict()["relu_reduction"] is None
    assert "no ReLU left" in str(report)


@pytest.fixture(scope="module")
def spec_dir(models, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("saved") / "tiny"
    write_pi_spec(models[1], model_dir / "1")
    write_pi_spec(models[1], model_dir / "3")
    return model_dir


def test_report_reads_pi_spec_alone(models, spec_dir, capsys):
    assert main([str(spec_dir / "1")]) == 0
    text = capsys.readouterr().out
    assert ka.count_relus(models[1]).table() in text
    assert "stem_relu_uncounted" in text and "PartialReLU" in text
    assert cost_report(models[1]).text() in text
    assert main([str(spec_dir)]) == 0
    assert f"{spec_dir / '3' / 'pi_spec.json'}" in capsys.readouterr().out
    assert main([str(spec_dir / "1" / "pi_spec.json"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["exported"]["relus"] == 320
    assert data["original"]["relus"] == 512
    assert main([str(spec_dir / "missing")]) == 1
    assert "no pi_spec.json" in capsys.readouterr().err


def test_report_runs_as_module(spec_dir):
    result = subprocess.run(
        [sys.executable, "-m", "keras_autorep.report", str(spec_dir / "1")],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "PI cost estimate" in result.stdout
