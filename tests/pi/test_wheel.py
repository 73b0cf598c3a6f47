"""The wheel built from setup.py: its files, its metadata, and a copy
installed outside the checkout that prices an export with every calibrated
protocol and finds its runner scripts."""

import email.parser
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import pytest

from keras_autorep.export import export_all
from pi_models import harden_sites, teacher

REPO = Path(__file__).resolve().parents[2]
PROTOCOLS = ("crypten", "spu-semi2k", "spu-cheetah")
SHIPPED = (
    "keras_autorep/costs/calibration.json",
    "keras_autorep/pi/runners/crypten_party.py",
    "keras_autorep/pi/runners/spu_party.py",
    "keras_autorep/pi/runners/requirements-crypten.txt",
    "keras_autorep/pi/runners/requirements-spu.txt",
)
SCRIPTS = {
    "keras-autorep-pi": "keras_autorep.pi.__main__:main",
    "keras-autorep-cifar10": "keras_autorep.recipes.entry_points:cifar10",
    "keras-autorep-cifar100": "keras_autorep.recipes.entry_points:cifar100",
    "keras-autorep-tiny-imagenet":
        "keras_autorep.recipes.entry_points:tiny_imagenet",
    "keras-autorep-imagenet": "keras_autorep.recipes.entry_points:imagenet",
    "keras-autorep-cryptonas": "keras_autorep.recipes.entry_points:cryptonas",
}
DEV_ONLY = {"pytest", "hypothesis", "import-linter", "jax", "jaxlib"}


def run(command, **options):
    result = subprocess.run(command, capture_output=True, text=True,
                            timeout=600, **options)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The checkout's files (tracked and new, not ignored) copied to a
    scratch folder, so that the build leaves nothing in the checkout."""
    copy = tmp_path_factory.mktemp("source")
    files = run(["git", "ls-files", "-z", "--cached", "--others",
                 "--exclude-standard"], cwd=REPO).split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    return copy


@pytest.fixture(scope="module")
def wheel(source, tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--no-build-isolation", "--no-index", "-w", str(dist), str(source)])
    (path,) = dist.glob("keras_autorep-*.whl")
    return path


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory):
    """The wheel installed (without dependencies) into a folder of its
    own."""
    target = tmp_path_factory.mktemp("site")
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-index", "--target", str(target), str(wheel)])
    return target


def wheel_text(wheel, suffix):
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist()
                   if n.endswith(".dist-info/" + suffix)]
        return archive.read(name).decode()


def test_wheel_holds_the_package_and_its_data(wheel, source):
    with zipfile.ZipFile(wheel) as archive:
        names = {n for n in archive.namelist() if ".dist-info/" not in n}
    package = {str(p.relative_to(source))
               for p in (source / "keras_autorep").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert set(SHIPPED) <= names
    assert names == package
    assert not any(n.startswith(("tests/", "runtimes/", "recipes/"))
                   for n in names)


def test_wheel_metadata_keeps_development_tools_in_extras(wheel):
    metadata = email.parser.Parser().parsestr(wheel_text(wheel, "METADATA"))
    requires = metadata.get_all("Requires-Dist")
    core = [r for r in requires if "extra ==" not in r]
    names = {r.split(";")[0].split("[")[0].split("=")[0].split("<")[0]
             .split(">")[0].strip().lower() for r in core}
    assert "tensorflow" in names and "keras" in names
    assert not names & DEV_ONLY
    assert set(metadata.get_all("Provides-Extra")) == {"jax", "pi", "dev"}

    def extra(name):
        return {r.split(";")[0].strip() for r in requires
                if f'extra == "{name}"' in r}

    assert extra("jax") == {"jax[cpu]==0.10.2"}
    assert extra("pi") == extra("jax") | {"onnxruntime==1.31.1"}
    assert {"pytest==9.2.0", "hypothesis==6.170.17",
            "import-linter==2.17"} <= extra("dev")
    assert extra("pi") <= extra("dev")


def test_wheel_declares_the_console_scripts(wheel):
    text = wheel_text(wheel, "entry_points.txt")
    scripts = dict(line.split(" = ") for line in text.splitlines()
                   if " = " in line)
    assert scripts == SCRIPTS


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("pricing an export reads its ONNX graph (TensorFlow)")
    base = tmp_path_factory.mktemp("export")
    return export_all(harden_sites(teacher()), base, "hardened")


@pytest.fixture(scope="module")
def outside(site, tmp_path_factory):
    """``(cwd, env)``: a folder outside the checkout, the installed copy on
    ``PYTHONPATH`` and no runtime folder configured."""
    cwd = tmp_path_factory.mktemp("elsewhere")
    env = dict(os.environ, PYTHONPATH=str(site), TF_CPP_MIN_LOG_LEVEL="3",
               XDG_DATA_HOME=str(cwd / "data"))
    env.pop("KERAS_AUTOREP_PI_ENVS", None)
    return cwd, env


def test_installed_copy_finds_its_data(site, outside):
    cwd, env = outside
    code = (
        "import json, keras_autorep\n"
        "from keras_autorep.pi import envs, runtimes\n"
        "print(json.dumps([keras_autorep.__file__, str(envs.envs_folder()),"
        " [str(runtimes.runner(s)) for s in runtimes.RUNTIMES.values()],"
        " [str(envs.runner_file(e.requirements))"
        "  for e in envs.ENVIRONMENTS.values()]]))\n"
    )
    output = run([sys.executable, "-c", code], cwd=cwd, env=env)
    package, folder, runners, requirements = json.loads(
        output.strip().splitlines()[-1])
    assert Path(package).is_relative_to(site)
    assert Path(folder) == cwd / "data" / "keras_autorep" / "pi-envs"
    for path in runners + requirements:
        assert Path(path).is_relative_to(site) and Path(path).is_file()


def test_installed_copy_prices_every_calibrated_protocol(
        site, outside, export):
    cwd, env = outside
    text = run([sys.executable, "-m", "keras_autorep.pi", "cost",
                str(export)], cwd=cwd, env=env)
    for name in PROTOCOLS:
        assert f"{name} (calibrated prediction)" in text
        assert f"  {name}: " in text  # its provenance line
    calibration = site / "keras_autorep" / "costs" / "calibration.json"
    assert f"calibration ({calibration}):" in text
    data = json.loads(run([str(site / "bin" / "keras-autorep-pi"), "cost",
                           str(export), "--json"], cwd=cwd, env=env))
    assert set(data["protocols"]) == set(PROTOCOLS)
