"""Where the two-party runtimes' virtualenvs live (``envs_folder``), the
error naming the folder and the command that builds it, and what
``python -m keras_autorep.pi setup`` runs (recorded, nothing installed)."""

import re
import shlex
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from keras_autorep.pi import envs, measure
from keras_autorep.pi.__main__ import main
from keras_autorep.pi.envs import (
    ENVIRONMENTS,
    ENVS_VARIABLE,
    envs_folder,
    interpreter_path,
    run_step,
    runner_file,
)
from keras_autorep.pi.runtimes import RUNTIMES, interpreter, runner


@pytest.fixture
def places(tmp_path, monkeypatch):
    """A checkout without runtimes, a home, no variables set."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "setup.py").write_text("")
    monkeypatch.setattr(envs, "CHECKOUT", checkout)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(ENVS_VARIABLE, raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    return tmp_path, checkout


def test_envs_folder_resolution_order(places, monkeypatch):
    tmp_path, checkout = places
    user = tmp_path / "home" / ".local/share/keras_autorep/pi-envs"
    assert envs_folder() == user
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert envs_folder() == tmp_path / "data/keras_autorep/pi-envs"
    monkeypatch.setenv("XDG_DATA_HOME", "")  # empty counts as unset
    assert envs_folder() == user
    (checkout / ".venv-spu").mkdir()
    assert envs_folder() == checkout
    (checkout / "setup.py").unlink()  # not a source checkout
    assert envs_folder() == user
    (checkout / "setup.py").write_text("")
    monkeypatch.setenv(ENVS_VARIABLE, str(tmp_path / "variable"))
    assert envs_folder() == tmp_path / "variable"
    assert envs_folder(tmp_path / "given") == tmp_path / "given"


def test_missing_runtime_names_the_folder_and_the_command(places):
    tmp_path, _ = places
    with pytest.raises(FileNotFoundError) as error:
        interpreter(RUNTIMES["spu-cheetah"], envs=tmp_path / "nowhere")
    message = str(error.value)
    assert "\n" not in message
    assert f"no spu runtime in {tmp_path / 'nowhere'}" in message
    command = shlex.join([sys.executable, "-m", "keras_autorep.pi", "setup",
                          "--envs", str(tmp_path / "nowhere"),
                          "--runtime", "spu"])
    assert f"`{command}`" in message


def test_measure_looks_in_the_given_folder(tmp_path):
    relu = helper.make_graph(
        [helper.make_node("Relu", ["image"], ["logits"])], "relu",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])])
    onnx.save(helper.make_model(relu), str(tmp_path / "model.onnx"))
    images = np.zeros((1, 2), "float32")
    with pytest.raises(FileNotFoundError,
                       match=re.escape(f"no spu runtime in {tmp_path}/none ")):
        measure(tmp_path, "spu-semi2k", images, envs=tmp_path / "none")


def test_interpreter_of_a_built_environment(places):
    tmp_path, checkout = places
    python = checkout / ".venv-crypten" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert interpreter(RUNTIMES["crypten"]) == python  # found in the checkout
    with pytest.raises(FileNotFoundError, match="no spu runtime"):
        interpreter_path("spu")
    with pytest.raises(ValueError, match="choose from"):
        interpreter_path("aby3")


def test_runner_scripts_and_requirements_are_shipped():
    for spec in RUNTIMES.values():
        assert runner(spec).is_file()
        assert "keras_autorep" not in "".join(
            line for line in runner(spec).read_text().splitlines()
            if line.startswith(("import", "from")))
    for env in ENVIRONMENTS.values():
        assert runner_file(env.requirements).is_file()
    assert "torch==2.13.0" in runner_file(
        "requirements-crypten.txt").read_text().split()
    with pytest.raises(FileNotFoundError, match="reinstall"):
        runner_file("absent.py")


@pytest.fixture
def recorded(monkeypatch):
    steps = []
    monkeypatch.setattr(envs, "run_step",
                        lambda command: steps.append(list(map(str, command))))
    return steps


def test_setup_builds_each_environment_in_the_folder(
        recorded, tmp_path, capsys):
    assert main(["setup", "--envs", str(tmp_path)]) == 0
    crypten, spu = tmp_path / ".venv-crypten", tmp_path / ".venv-spu"
    pip = ["-m", "pip", "install", "--quiet"]
    assert recorded == [
        [sys.executable, "-m", "venv", str(crypten)],
        [str(crypten / "bin/python"), *pip, "--upgrade", "pip"],
        [str(crypten / "bin/python"), *pip, "-r",
         str(runner_file("requirements-crypten.txt"))],
        [str(crypten / "bin/python"), *pip, "--no-deps", "crypten==0.4.1"],
        [sys.executable, "-m", "venv", str(spu)],
        [str(spu / "bin/python"), *pip, "--upgrade", "pip"],
        [str(spu / "bin/python"), *pip, "-r",
         str(runner_file("requirements-spu.txt"))],
    ]
    assert f"runtimes ready in {tmp_path}" in capsys.readouterr().out


def test_setup_of_one_existing_environment_updates_it(
        recorded, places, monkeypatch):
    tmp_path, _ = places
    monkeypatch.setenv(ENVS_VARIABLE, str(tmp_path / "envs"))
    python = tmp_path / "envs" / ".venv-spu" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert main(["setup", "--runtime", "spu"]) == 0
    assert [step[0] for step in recorded] == [str(python)] * 2


def test_setup_failure_is_one_line(tmp_path, capsys, usage_error):
    with pytest.raises(RuntimeError, match=r"failed \(exit 3\)$"):
        run_step([sys.executable, "-c", "raise SystemExit(3)"])
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["setup", "--envs", str(blocker), "--runtime", "spu"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    usage_error(lambda: main(["setup", "--runtime", "aby3"]),
                "argument --runtime: invalid choice: 'aby3'")
