"""Installs model/, training/, serving/ and export/ as subpackages of the `impasto` namespace."""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
CODE_FOLDERS = ("model", "training", "serving", "export")
SUBPACKAGES = ("model.lossnet", "model.optimize", "model.feedforward", "serving.batch")
"""Packages inside the code folders (setuptools installs only the packages it is given)."""


def _requirements(name: str) -> list[str]:
    lines = (HERE / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="impasto",
    version="0.1.0",
    description="Neural style transfer in TensorFlow: Gatys optimization, fast feed-forward networks, TF Serving.",
    python_requires=">=3.11",
    packages=["impasto"] + [f"impasto.{folder}" for folder in CODE_FOLDERS] + [f"impasto.{sub}" for sub in SUBPACKAGES],
    package_dir={"impasto": "impasto", **{f"impasto.{folder}": folder for folder in CODE_FOLDERS}},
    package_data={"impasto.model": ["bundled/*.npz", "bundled/*.json"]},
    install_requires=_requirements("requirements.txt"),
    extras_require={"dev": _requirements("requirements-dev.txt")},
    entry_points={"console_scripts": ["impasto = impasto.cli:main"]},
)
