"""The two-party runtimes' virtualenvs: where they live and how to build them.

CrypTen and SPU share no package versions with the project (nor with each
other), so each runs in its own virtualenv, ``.venv-crypten`` and
``.venv-spu``, in one folder (``envs_folder``). ``build_env`` creates one
with ``python -m venv`` and installs the requirement file shipped beside the
runner scripts in ``runners/`` (package data, like the scripts themselves);
``python -m keras_autorep.pi setup`` and ``make pi-env`` call it.
"""

import dataclasses
import os
import shlex
import subprocess
import sys
from pathlib import Path

RUNNERS = Path(__file__).resolve().parent / "runners"
ENVS_VARIABLE = "KERAS_AUTOREP_PI_ENVS"
CHECKOUT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Environment:
    """A runtime virtualenv: its folder name, the requirement file in
    ``runners/`` and the packages installed after it without their
    dependencies."""

    name: str
    venv: str
    requirements: str
    no_deps: tuple = ()


ENVIRONMENTS = {
    # crypten 0.4.1 declares `sklearn`, which no longer installs; the
    # requirement file holds the packages it really imports.
    "crypten": Environment("crypten", ".venv-crypten",
                           "requirements-crypten.txt", ("crypten==0.4.1",)),
    "spu": Environment("spu", ".venv-spu", "requirements-spu.txt"),
}


def environment(name):
    """The ``Environment`` called ``name`` (``ValueError`` lists the
    names)."""
    if name not in ENVIRONMENTS:
        raise ValueError(f"unknown runtime environment {name!r}; choose "
                         f"from {sorted(ENVIRONMENTS)}")
    return ENVIRONMENTS[name]


def user_envs_folder():
    """``$XDG_DATA_HOME/keras_autorep/pi-envs`` (default
    ``~/.local/share/keras_autorep/pi-envs``)."""
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share"
    return Path(data) / "keras_autorep" / "pi-envs"


def envs_folder(envs=None):
    """The folder holding the runtime virtualenvs, the first of:

    1. ``envs`` (``--envs``), when given;
    2. ``$KERAS_AUTOREP_PI_ENVS``, when set;
    3. the source checkout keras_autorep is imported from, when it holds
       ``.venv-crypten`` or ``.venv-spu`` (what ``make pi-env`` builds);
    4. ``user_envs_folder()``.
    """
    if envs:
        return Path(envs)
    if os.environ.get(ENVS_VARIABLE):
        return Path(os.environ[ENVS_VARIABLE])
    if (CHECKOUT / "setup.py").is_file() and any(
            (CHECKOUT / env.venv).is_dir() for env in ENVIRONMENTS.values()):
        return CHECKOUT
    return user_envs_folder()


def setup_command(folder, name):
    """The command that builds environment ``name`` in ``folder``."""
    return shlex.join([sys.executable, "-m", "keras_autorep.pi", "setup",
                       "--envs", str(folder), "--runtime", name])


def interpreter_path(name, envs=None):
    """The Python of environment ``name`` (``FileNotFoundError`` names the
    folder looked in and the command that builds it)."""
    folder = envs_folder(envs)
    python = folder / environment(name).venv / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(
            f"no {name} runtime in {folder} ({python} is missing): build it "
            f"with `{setup_command(folder, name)}`")
    return python


def runner_file(filename):
    """The path of a shipped file of ``runners/`` (``FileNotFoundError``
    when the installation lacks it)."""
    path = RUNNERS / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall keras_autorep")
    return path


def run_step(command):
    """Run one build step; ``RuntimeError`` (one line) when it fails."""
    result = subprocess.run([str(part) for part in command])
    if result.returncode != 0:
        raise RuntimeError(f"`{shlex.join(map(str, command))}` failed "
                           f"(exit {result.returncode})")


def build_env(name, envs=None):
    """Create (or update) environment ``name`` in ``envs_folder(envs)`` with
    this interpreter's ``venv`` and install its pinned requirements; returns
    the virtualenv's folder."""
    spec = environment(name)
    venv = envs_folder(envs) / spec.venv
    python = venv / "bin" / "python"
    if not python.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        run_step([sys.executable, "-m", "venv", venv])
    pip = [python, "-m", "pip", "install", "--quiet"]
    run_step(pip + ["--upgrade", "pip"])
    run_step(pip + ["-r", runner_file(spec.requirements)])
    if spec.no_deps:
        run_step(pip + ["--no-deps", *spec.no_deps])
    return venv
