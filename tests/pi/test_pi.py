"""PI cost model and the ``python -m keras_autorep.pi cost`` command."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_autorep as ka
from keras_autorep import pi
from keras_autorep.export import read_pi_spec, write_pi_spec
from keras_autorep.pi import cost_report, estimate_cost
from keras_autorep.pi.__main__ import main
from keras_autorep.pi.exported import (
    cost_text,
    find_spec,
    spec_count,
    write_cost_file,
)


def tiny_model():
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, padding="same"),
            keras.layers.ReLU(name="stem_relu"),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(5),
        ]
    )


def hardened(model, keep):
    """``keep``: ``{selector: kept fraction}``."""
    selected = ka.replace_relus(model)
    for selector in ka.selectors(selected):
        mask = np.zeros(selector.mask.shape, "float32").ravel()
        mask[: int(mask.size * keep[selector.name])] = 1.0
        selector.mask.assign(mask.reshape(selector.mask.shape))
    return ka.harden(selected)


@pytest.fixture(scope="module")
def models():
    """The all-ReLU model and its hardening keeping the whole stem ReLU
    (256) and a quarter of the fused one (64 of 256)."""
    original = tiny_model()
    sites = [s.name for s in ka.selectors(ka.replace_relus(original))]
    assert sites[0] == "stem_relu"
    return original, hardened(original, keep=dict(zip(sites, (1.0, 0.25))))


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
    assert [row.kept for row in count.rows] == [256, 64]
    assert count.kept == 64 + 256 and count.total == 512
    report = cost_report(model, original)
    assert not hasattr(report.exported, "relus_counted")
    assert report.exported.relus == 64 + 256
    assert report.exported.polynomials == 256 - 64
    assert report.original.relus == 512 and report.original.polynomials == 0
    assert report.relu_reduction == pytest.approx(512 / 320)
    text = report.text()
    assert "ratio: 1.6x fewer ReLUs, online" in text
    assert "counted ReLUs" not in text and "computed" not in text
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
    assert report.original.relus == ka.count_relus(model).total


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
    assert main(["cost", str(spec_dir / "1")]) == 0
    text = capsys.readouterr().out
    assert ka.count_relus(models[1]).table() in text
    assert "stem_relu" in text and "PartialReLU" in text
    assert cost_report(models[1]).text() in text
    assert main(["cost", str(spec_dir)]) == 0
    assert f"{spec_dir / '3' / 'pi_spec.json'}" in capsys.readouterr().out
    assert main(["cost", str(spec_dir / "1" / "pi_spec.json"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["exported"]["relus"] == 320
    assert data["original"]["relus"] == 512
    assert data["spec"] == str(spec_dir / "1" / "pi_spec.json")
    assert main(["cost", str(spec_dir / "missing")]) == 1
    assert "no pi_spec.json" in capsys.readouterr().err
    assert not list(spec_dir.rglob("pi_cost.txt"))  # only with --write


def test_cost_write_saves_the_report_beside_the_spec(models, tmp_path,
                                                     capsys):
    write_pi_spec(models[1], tmp_path / "m" / "1")
    assert main(["cost", str(tmp_path / "m"), "--write"]) == 0
    written = (tmp_path / "m" / "1" / "pi_cost.txt").read_text()
    assert written.strip() in capsys.readouterr().out
    assert written == cost_report(models[1]).text() + "\n"
    assert write_cost_file(tmp_path / "m" / "1").read_text() == written


def test_exported_helpers_read_the_spec_alone(models, spec_dir):
    assert find_spec(spec_dir) == spec_dir / "3" / "pi_spec.json"
    assert find_spec(spec_dir / "1") == spec_dir / "1" / "pi_spec.json"
    spec = read_pi_spec(spec_dir / "1")
    count = ka.count_relus(models[1])
    assert spec_count(spec).table() == count.table()
    assert spec_count(spec).totals() == count.totals()
    text = cost_text(spec, spec_dir / "1" / "pi_spec.json")
    assert text.startswith(f"model {models[1].name!r}")
    assert "input 'image': float32 NHWC (batch,) + (8, 8, 3)" in text
    with pytest.raises(FileNotFoundError):
        find_spec(spec_dir / "missing")


def test_cost_command_needs_a_subcommand(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["report", "somewhere"])
    capsys.readouterr()


def test_report_runs_as_module(spec_dir):
    result = subprocess.run(
        [sys.executable, "-m", "keras_autorep.pi", "cost",
         str(spec_dir / "1")],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "PI cost estimate" in result.stdout
