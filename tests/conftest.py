"""Shared test helpers and fixtures: test images, tiny loss networks, photo folders, tiny exported models."""

import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from impasto.model import image_io  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "tests" / "data"
_PHOTOS = ("chelsea.png", "coffee.png", "rocket.png", "fruits.png", "koala.png", "puppy.png")


def load_test_image(name: str):
    """A test image from tests/data as float32 [H, W, 3] in [0, 255]."""
    return image_io.load_image(DATA_DIR / name)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_vgg_weights():
    """A random VGG16 with 1/8 of the channels: fast plumbing tests of everything that uses the loss network."""
    from impasto.model.vgg import random_vgg_weights

    return random_vgg_weights(channels_divisor=8, seed=0)


@pytest.fixture(scope="session")
def tiny_vgg(tiny_vgg_weights):
    from impasto.model.vgg import VggFeatures

    return VggFeatures(tiny_vgg_weights)


@pytest.fixture(scope="session")
def tiny_vgg_file(tmp_path_factory, tiny_vgg_weights) -> Path:
    """`tiny_vgg_weights` saved as a converted .npz, for --vgg-weights and subprocesses."""
    from impasto.model.weights import save_vgg_weights

    path = tmp_path_factory.mktemp("vgg") / "tiny_vgg.npz"
    save_vgg_weights(tiny_vgg_weights, path)
    return path


@pytest.fixture(scope="session")
def imagenet_weights():
    from impasto.model.weights import load_vgg_weights

    return load_vgg_weights("imagenet")


@pytest.fixture(scope="session")
def imagenet_vgg(imagenet_weights):
    from impasto.model.vgg import VggFeatures

    return VggFeatures(imagenet_weights)


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """Six test photos, one of them in a nested folder."""
    folder = tmp_path_factory.mktemp("photos")
    (folder / "nested").mkdir()
    for index, name in enumerate(_PHOTOS):
        shutil.copy(DATA_DIR / name, folder / ("nested" if index == 0 else "") / name)
    return folder


# Export: one tiny network (width 0.125) and its exports, built once per session.


@pytest.fixture(scope="session")
def export_network():
    """A randomly initialised TransformerNet at width 0.125 (fixed seed)."""
    from impasto.model.transformer import TransformerNet

    return TransformerNet(width=0.125, seed=0)


@pytest.fixture(scope="session")
def export_config():
    """Two bucket sides (64, 128) and a 128 px max side: small enough for CPU XLA compiles."""
    from impasto.export.signatures import ServingConfig

    return ServingConfig(max_side=128, ladder=(64,))


@pytest.fixture(scope="session")
def export_module(export_network, export_config):
    """The in-memory StylizeModule the session's XLA export is made from."""
    from impasto.export.signatures import StylizeModule

    return StylizeModule(export_network, export_config)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, export_network, export_config) -> dict:
    """{"models_dir", "xla", "noxla"}: an XLA and a no-XLA export of `export_network`, version 1 each."""
    from dataclasses import replace

    from impasto.export.exporter import export_model

    models_dir = tmp_path_factory.mktemp("models")
    metadata = {"width": 0.125, "style": "test"}
    return {
        "models_dir": models_dir,
        "xla": export_model(export_network, metadata, models_dir / "tiny", config=export_config),
        "noxla": export_model(export_network, metadata, models_dir / "tiny_noxla",
                              config=replace(export_config, jit_compile=False)),
    }


@pytest.fixture(scope="session")
def export_bundle(tmp_path_factory, export_network) -> Path:
    """The session network saved as a .npz bundle (float16 weights) with its .json."""
    from impasto.model.library import write_bundle

    path = tmp_path_factory.mktemp("bundle") / "tiny.npz"
    write_bundle(export_network, {"width": 0.125, "style": "test"}, path)
    return path
