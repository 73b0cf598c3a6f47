"""Install keras_autorep: ``pip install -e .``"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def requirements():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


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
    python_requires=">=3.10",
    install_requires=requirements(),
)
