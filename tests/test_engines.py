"""The feed-forward engines (tf, tf_xla, litert) give one picture, and `auto` takes the measured winner."""

import json
import subprocess

import numpy as np
import pytest
from PIL import Image

from impasto.model.cpu import this_cpu, usable_cpus
from impasto.model.errors import InvalidInputError
from impasto.model.feedforward import engines
from impasto.model.feedforward.engines import EngineChoice, choose_engine, make_runner
from impasto.model.feedforward.reference_transformer import ReferenceTransformer
from impasto.model.feedforward.stylizer import FastStylizer
from impasto.model.feedforward.transformer import TransformerNet
from impasto.testing import IMPASTO_COMMAND

from conftest import DATA_DIR, load_test_image

TINY_SIDES = (32, 48)


@pytest.fixture(scope="module")
def random_network() -> TransformerNet:
    """A quarter-width network whose every variable (norm scales and offsets too) is random."""
    network = TransformerNet(width=0.25, seed=3)
    rng = np.random.default_rng(3)
    network.load_weights_dict({path: value + rng.normal(0.0, 0.3, value.shape)
                               for path, value in network.weights_dict().items()})
    return network


@pytest.mark.slow
@pytest.mark.parametrize("engine", engines.ENGINES)
@pytest.mark.parametrize("height, width", [(64, 96), (37, 50)])
def test_every_engine_computes_the_reference_network(random_network, engine, height, width):
    photo = load_test_image("chelsea.png")[None, 40:40 + height, 60:60 + width]
    expected = ReferenceTransformer(random_network.weights_dict())(photo).numpy()
    output = np.asarray(make_runner(engine, random_network)(photo))
    assert output.shape == photo.shape
    assert expected.std() > 1.0  # A picture, not a constant.
    assert np.abs(output - expected).max() < 0.05, np.abs(output - expected).max()


def test_engine_for_takes_the_winner_at_the_nearest_calibrated_size():
    choice = EngineChoice({256: {"tf": 0.2, "tf_xla": 0.3, "litert": 0.1},
                           512: {"tf": 0.7, "tf_xla": 0.9, "litert": 0.8}})
    assert choice.engine_for(256, 256) == "litert"
    assert choice.engine_for(200, 300) == "litert"
    assert choice.engine_for(512, 512) == "tf"
    assert choice.engine_for(1500, 2000) == "tf"  # Beyond the largest size: that size's winner.
    assert choice.engine_for(8, 8) == "litert"


@pytest.mark.slow
def test_choose_engine_measures_once_per_cpu_and_width_then_reads_the_cache(tmp_path):
    cache, reports = tmp_path / "choice.json", []
    first = choose_engine(0.125, engines=("tf", "litert"), sides=TINY_SIDES, repeats=1, cache=cache,
                          report=reports.append)
    assert len(reports) == 1 and sorted(first.seconds) == list(TINY_SIDES)
    assert all(sorted(values) == ["litert", "tf"] and min(values.values()) > 0 for values in first.seconds.values())
    (key, entry), = json.loads(cache.read_text()).items()
    assert this_cpu().model in key and "width 0.125" in key and "tensorflow" in key
    assert f"threads {engines.engine_threads()}" in key
    again = choose_engine(0.125, engines=("tf", "litert"), sides=TINY_SIDES, repeats=1, cache=cache,
                          report=reports.append)
    assert len(reports) == 1 and again.seconds == first.seconds  # Read, not measured.
    choose_engine(0.25, engines=("tf", "litert"), sides=TINY_SIDES, repeats=1, cache=cache, report=reports.append)
    assert len(reports) == 2 and len(json.loads(cache.read_text())) == 2  # Another width: another entry.


@pytest.mark.subprocess
def test_engines_run_on_the_threads_tensorflow_was_given():
    """`impasto batch` gives each worker process a share of the cores; LiteRT and the calibration follow it."""
    script = ("import tensorflow as tf; tf.config.threading.set_intra_op_parallelism_threads(1); "
              "from impasto.model.feedforward import engines; print(engines.engine_threads(), "
              "'threads 1' in engines.calibration_key(0.5, ('tf',)))")
    finished = subprocess.run([IMPASTO_COMMAND[0], "-c", script], capture_output=True, text=True, timeout=300)
    assert finished.stdout.split() == ["1", "True"], finished.stderr[-2000:]
    assert engines.engine_threads() == usable_cpus()  # This process set nothing.


@pytest.mark.parametrize("damage", ["{not json", "[]", '{"KEY": {"seconds": {"32": {"tf": -1.0}}}}'])
def test_a_damaged_cache_is_measured_over(tmp_path, damage):
    cache, reports = tmp_path / "choice.json", []
    key = engines.calibration_key(0.125, ("tf",), sides=(32,))
    cache.write_text(damage.replace("KEY", key))
    choice = choose_engine(0.125, engines=("tf",), sides=(32,), repeats=1, cache=cache, report=reports.append)
    assert len(reports) == 1 and choice.seconds[32]["tf"] > 0
    assert json.loads(cache.read_text())[key]["seconds"]["32"]["tf"] > 0


def test_auto_runs_the_engine_the_cache_names(monkeypatch, tmp_path, random_network):
    """With a calibration on file that has litert winning small images and tf large ones, `auto` follows it."""
    monkeypatch.setenv(engines.CACHE_DIR_VARIABLE, str(tmp_path))
    names = tuple(engines.ENGINES)
    key = engines.calibration_key(random_network.width, names)
    seconds = {"256": {"tf": 0.2, "tf_xla": 0.3, "litert": 0.1}, "512": {"tf": 0.5, "tf_xla": 0.9, "litert": 0.8}}
    (tmp_path / engines.CACHE_FILE).write_text(json.dumps({key: {"seconds": seconds}}))
    reports = []
    stylizer = FastStylizer(random_network, engine="auto", report=reports.append)
    assert reports == []
    assert stylizer.engine_for(200, 240) == "litert" and stylizer.engine_for(600, 500) == "tf"
    photo = load_test_image("chelsea.png")[:64, :80]
    expected = FastStylizer(random_network, engine="tf").stylize(photo)
    assert np.abs(stylizer.stylize(photo) - expected).max() < 0.05
    assert set(stylizer._runners) == {"litert"}


def test_unknown_engine_is_refused(random_network):
    with pytest.raises(InvalidInputError, match="unknown engine 'gpu'.*auto.*tf_xla"):
        FastStylizer(random_network, engine="gpu")


def _stylize(tmp_path, *flags):
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}.png"
    finished = subprocess.run([*IMPASTO_COMMAND, "stylize", "--model", "great_wave", *flags,
                               str(DATA_DIR / "coffee.png"), "--out", str(out)],
                              capture_output=True, text=True, timeout=600)
    return finished, out


@pytest.mark.subprocess
def test_stylize_cli_engines_write_the_same_picture_and_refuse_unknown_ones(tmp_path):
    outputs = {}
    for engine in ("tf", "litert"):
        finished, out = _stylize(tmp_path, "--engine", engine, "--no-progress")
        assert finished.returncode == 0, finished.stderr[-2000:]
        outputs[engine] = np.asarray(Image.open(out), np.float32)
    assert np.abs(outputs["tf"] - outputs["litert"]).max() <= 1.0  # Rounding to 8 bits at most.
    finished, out = _stylize(tmp_path, "--engine", "onnx")
    assert finished.returncode == 2 and "unknown engine 'onnx'" in finished.stderr and not out.exists()
