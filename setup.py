"""Install keras_autorep: ``pip install .`` (extras: jax, pi, dev).

The pins live in requirements.txt, the pinned development environment:
its first section is ``install_requires``, each ``## extra: NAME`` section
an extra.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
EXTRA = "## extra:"


def requirement_sections():
    """``{"": run-time requirements, extra name: its requirements}``."""
    sections = {"": []}
    current = sections[""]
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if line.startswith(EXTRA):
            current = sections.setdefault(line[len(EXTRA):].strip(), [])
        elif line and not line.startswith("#"):
            current.append(line)
    return sections


SECTIONS = requirement_sections()
EXTRAS = {
    "jax": SECTIONS["jax"],
    "pi": SECTIONS["pi"] + SECTIONS["jax"],
    "dev": SECTIONS["dev"] + SECTIONS["pi"] + SECTIONS["jax"],
}
RECIPES = ("cifar10", "cifar100", "tiny_imagenet", "imagenet", "cryptonas")

setup(
    name="keras_autorep",
    version="0.1.0",
    description=(
        "Keras 3 layers, training and export for private inference on a "
        "ReLU budget (AutoReP, SNL, SENet, CryptoNAS)"
    ),
    long_description=(ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_autorep", "keras_autorep.*"]),
    # The two-party runner scripts and their virtualenvs' requirement files
    # run in their own interpreters: data of keras_autorep.pi, not modules.
    package_data={"keras_autorep.costs": ["calibration.json"],
                  "keras_autorep.pi": ["runners/*.py", "runners/*.txt"]},
    python_requires=">=3.10",
    install_requires=SECTIONS[""],
    extras_require=EXTRAS,
    entry_points={"console_scripts": [
        "keras-autorep-pi = keras_autorep.pi.__main__:main",
        *(f"keras-autorep-{name.replace('_', '-')} = "
          f"keras_autorep.recipes.entry_points:{name}" for name in RECIPES),
    ]},
)
