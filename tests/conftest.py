"""Shared test helpers and fixtures: test images, tiny loss networks, photo folders, tiny exported models."""

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The feed-forward engine choice (impasto.model.feedforward.engines) is cached here, never in the user's
# ~/.cache, so a run does not depend on what an earlier run measured.
os.environ["IMPASTO_CACHE_DIR"] = tempfile.mkdtemp(prefix="impasto-test-cache-")

import pytest  # noqa: E402

from impasto.model.tensorflow_import import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()  # Its start-up lines would print after the test summary, from each worker.

from impasto.model import image_io  # noqa: E402
from impasto.model.feedforward import engines  # noqa: E402
from impasto.testing import ServerProcess  # noqa: E402


def _seed_engine_choice(cache_dir: Path, engine: str, widths: Sequence[float]) -> None:
    """Writes an engine-choice cache (`impasto.model.feedforward.engines`) in which `engine` wins at every
    calibrated side for networks of each of `widths`, so that ``--engine auto`` runs it without timing anything."""
    names = engines.available_engines()
    seconds = {str(side): {name: 1.0 if name == engine else 2.0 for name in names}
               for side in engines.CALIBRATION_SIDES}
    entries = {engines.calibration_key(width, names): {"seconds": seconds} for width in widths}
    (cache_dir / engines.CACHE_FILE).write_text(json.dumps(entries, indent=1))


# ... and holds a choice of `tf` for the widths the tests' networks have, so that `--engine auto` (the default of
# `impasto stylize` and `impasto batch`) gives the same engine on every machine and no test spends half a minute
# timing engines; tests/test_engines.py measures and caches choices of its own.
_seed_engine_choice(Path(os.environ["IMPASTO_CACHE_DIR"]), "tf", widths=(0.125, 0.25, 0.5, 1.0))

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "tests" / "data"
_PHOTOS = ("chelsea.png", "coffee.png", "rocket.png", "fruits.png", "koala.png", "puppy.png")


def as_foreground_process() -> None:
    """A `preexec_fn` that lets Ctrl-C (SIGINT) reach the child as it reaches a command typed in a terminal.

    A test run started in the background by a non-interactive shell (`make test &`, some CI
    runners) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt in its
    children; tests of Ctrl-C restore the default before the child starts.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)

# Markers that follow from a test's fixtures (pytest.ini describes each marker; `make test-fast` leaves them out).
# The other kinds, `subprocess` and `slow`, are written on the tests themselves.
_MARKERS_BY_FIXTURE = {"start_server": "server", "exported": "xla", "export_module": "xla",
                       "imagenet_weights": "imagenet"}


def pytest_collection_modifyitems(items):
    """Marks each test by the costly fixtures it uses, directly or through other fixtures."""
    for item in items:
        for marker in sorted({_MARKERS_BY_FIXTURE[name] for name in item.fixturenames if name in _MARKERS_BY_FIXTURE}):
            item.add_marker(marker)


def run_cli_in_process(capsys, *argv) -> tuple[int, str]:
    """(exit code, stderr) of `impasto ARGV...` run by `impasto.cli.main` in this process: what a real process
    would exit with (`impasto.cli` exits with what `main` returns), without the seconds a new process spends
    importing TensorFlow. For refusals; tests of what a process does (signals, files, ports) start a real one."""
    from impasto.cli import main

    capsys.readouterr()
    try:
        code = main([str(arg) for arg in argv])
    except SystemExit as exited:  # argparse's own refusals exit; a process would exit with the same code.
        code = exited.code
    return code, capsys.readouterr().err


def load_test_image(name: str):
    """A test image from tests/data as float32 [H, W, 3] in [0, 255]."""
    return image_io.load_image(DATA_DIR / name)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_vgg_weights():
    """A random VGG16 with 1/8 of the channels: fast plumbing tests of everything that uses the loss network."""
    from impasto.testing import random_vgg_weights

    return random_vgg_weights(channels_divisor=8, seed=0)


@pytest.fixture(scope="session")
def tiny_vgg(tiny_vgg_weights):
    from impasto.model.lossnet.vgg import VggFeatures

    return VggFeatures(tiny_vgg_weights)


@pytest.fixture(scope="session")
def tiny_vgg_file(tmp_path_factory, tiny_vgg_weights) -> Path:
    """`tiny_vgg_weights` saved as a converted .npz, for --vgg-weights and subprocesses."""
    from impasto.model.lossnet.weights import save_vgg_weights

    path = tmp_path_factory.mktemp("vgg") / "tiny_vgg.npz"
    save_vgg_weights(tiny_vgg_weights, path)
    return path


@pytest.fixture(scope="session")
def imagenet_weights():
    from impasto.model.lossnet.weights import load_vgg_weights

    return load_vgg_weights("imagenet")


@pytest.fixture(scope="session")
def imagenet_vgg(imagenet_weights):
    from impasto.model.lossnet.vgg import VggFeatures

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
    """A randomly initialised TransformerNet at width 0.125 (fixed seed) that reads a noise channel
    (`impasto.model.feedforward.noise_input`): the export, XLA and serving carry the fixed noise."""
    from impasto.model.feedforward.transformer import TransformerNet

    return TransformerNet(width=0.125, seed=0, noise_channels=1)


@pytest.fixture(scope="session")
def export_config():
    """GPU target (XLA), two bucket sides (64, 128) and a 128 px max side: small enough for CPU XLA compiles."""
    from impasto.export.signatures import ServingConfig

    return ServingConfig(max_side=128, ladder=(64,), target="gpu")


@pytest.fixture(scope="session")
def export_module(export_network, export_config):
    """The in-memory StylizeModule the session's XLA export is made from."""
    from impasto.export.signatures import StylizeModule

    return StylizeModule(export_network, export_config)


XLA_WARMUP_SIZES = ((64, 64), (100, 120))
"""Warmup sizes of the session's XLA export: buckets (64, 64) and (128, 128)."""


@pytest.fixture(scope="session")
def exported(tmp_path_factory, export_network, export_config) -> dict:
    """{"models_dir", "xla", "noxla"}: a GPU-target (XLA) export with `XLA_WARMUP_SIZES` and a default (CPU target,
    default warmup) export of `export_network`, version 1 each."""
    from dataclasses import replace

    from impasto.export.exporter import export_model

    models_dir = tmp_path_factory.mktemp("models")
    metadata = {"width": 0.125, "style": "test"}
    return {
        "models_dir": models_dir,
        "xla": export_model(export_network, metadata, models_dir / "tiny", config=export_config,
                            warmup_sizes=XLA_WARMUP_SIZES),
        "noxla": export_model(export_network, metadata, models_dir / "tiny_noxla",
                              config=replace(export_config, target="cpu")),
    }


@pytest.fixture(scope="session")
def export_bundle(tmp_path_factory, export_network) -> Path:
    """The session network saved as a .npz bundle (float16 weights) with its .json."""
    from impasto.model.feedforward.bundles import write_bundle

    path = tmp_path_factory.mktemp("bundle") / "tiny.npz"
    write_bundle(export_network, {"width": 0.125, "style": "test"}, path)
    return path


# Serving: a tiny no-XLA export (one 64 px bucket) and real `impasto serve` processes on loopback.


@pytest.fixture(scope="session")
def serving_version_dir(tmp_path_factory, export_network) -> Path:
    """Version 1 of a no-XLA export with a single 64 px bucket: loads and warms up in about a second."""
    from impasto.export.exporter import export_model
    from impasto.export.signatures import ServingConfig

    config = ServingConfig(max_side=64, ladder=(64,), target="cpu")
    models_dir = tmp_path_factory.mktemp("serving_models")
    return export_model(export_network, {"width": 0.125, "style": "test"}, models_dir / "tiny", 1, config,
                        warmup_sizes=((64, 64),))


@pytest.fixture(scope="session")
def start_server(tmp_path_factory):
    """Starts `impasto serve` processes (`start_server(args, rest=True)`); stops them at the end of the session."""
    servers = []

    def start(args: list[str], rest: bool = True, wait: bool = True) -> ServerProcess:
        server = ServerProcess([str(arg) for arg in args], tmp_path_factory.mktemp("serve") / "serve.log", rest)
        servers.append(server)
        return server.wait_ready() if wait else server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def small_images(tmp_path_factory) -> dict:
    """Four test photos as PNG bytes, 40 to 64 px on the long side (all different sizes), also saved in ["dir"]."""
    folder = tmp_path_factory.mktemp("small_images")
    images = {}
    for name, side in (("chelsea.png", 64), ("coffee.png", 48), ("rocket.png", 56), ("koala.png", 40)):
        data = image_io.encode_image(image_io.resize_long_side(load_test_image(name), side))
        (folder / name).write_bytes(data)
        images[name] = data
    return {"dir": folder, **images}


def _save_wrong_signature_model(version_dir: Path) -> None:
    """A SavedModel whose serving_default takes float "images" and gives "scores": not impasto's contract."""
    import tensorflow as tf

    class Wrong(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="images")])
        def serve(self, images):
            return {"scores": tf.reduce_sum(images, axis=1)}

    module = Wrong()
    tf.saved_model.save(module, str(version_dir), signatures={"serving_default": module.serve})


@pytest.fixture(scope="session")
def tiny_server(tmp_path_factory, serving_version_dir, start_server) -> ServerProcess:
    """One `impasto serve` for the session, from a models.config:

    - "tiny": versions 1 and 2 (specific policy), labels stable -> 1, canary -> 2;
    - "wrong": a model without impasto's signature keys.

    Batching is on (8 per batch, 30 ms timeout) and Prometheus metrics are enabled.
    """
    models = tmp_path_factory.mktemp("tiny_server")
    for version in ("1", "2"):
        shutil.copytree(serving_version_dir, models / "tiny" / version)
    _save_wrong_signature_model(models / "wrong" / "1")
    (models / "models.config").write_text(f"""model_config_list {{
  config {{
    name: "tiny" base_path: "{models / 'tiny'}" model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
  config {{ name: "wrong" base_path: "{models / 'wrong'}" model_platform: "tensorflow" }}
}}
""")
    (models / "batching.txt").write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 30000 }\n"
                                         "num_batch_threads { value: 2 }\n")
    (models / "monitoring.config").write_text(
        'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n')
    return start_server(["--model_config_file", models / "models.config", "--enable_batching",
                         "--batching_parameters_file", models / "batching.txt",
                         "--monitoring_config_file", models / "monitoring.config",
                         "--file_system_poll_wait_seconds", "0"])
