"""Tiled feed-forward stylization: equal to untiled, no seams, switched on by size or by flag."""

import subprocess

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from impasto.model.errors import InvalidInputError
from impasto.model.feedforward import tiled_network
from impasto.model.feedforward.bundles import load_network
from impasto.model.feedforward.stylizer import FastStylizer
from impasto.model.feedforward.tiled_network import tiled_stylize
from impasto.model.feedforward.transformer import TransformerNet
from impasto.model.tiling import Tiling
from impasto.testing import IMPASTO_COMMAND, seam_ratio

from conftest import load_test_image, run_cli_in_process

# Measured: 8e-4 levels (random network), 3e-3 (bundled model): float rounding only.
TILED_VS_UNTILED_MAX_ABS = 0.02
# How far the tiled result's seam ratio may sit from the untiled image's at the same boundaries.
SEAM_RATIO_TOLERANCE = 0.002


@pytest.fixture(scope="module")
def random_network():
    """A small random network whose instance norms have non-trivial scales and offsets (and 3 residual blocks,
    not the paper's 5, and a noise channel: tiling takes any depth, and each tile reads the noise where it lies)."""
    network = TransformerNet(width=0.25, residual_blocks=3, seed=1, noise_channels=1)
    rng = np.random.default_rng(0)
    for variable in network.trainable_variables:
        if variable.name.startswith(("scale", "offset")):
            variable.assign_add(rng.normal(0.0, 0.3, variable.shape).astype(np.float32))
    return network


@pytest.fixture(scope="module")
def starry_night():
    return load_network("starry_night")[0]


def synthetic_large_image(height: int, width: int) -> np.ndarray:
    """A photo-like test card: a photo stretched over the frame, gradients, hard edges and noise. [1, H, W, 3]."""
    photo = tf.image.resize(load_test_image("koala.png")[None], [height, width]).numpy()
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    photo[0, :, :, 0] = 0.6 * photo[0, :, :, 0] + 100.0 * (columns / width)
    photo[0, height // 3: height // 2, width // 5: width // 2, :] = [250.0, 30.0, 40.0]
    photo += np.random.default_rng(5).normal(0.0, 6.0, photo.shape).astype(np.float32)
    return np.clip(photo, 0.0, 255.0).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("size, tile_size", [((150, 203), 32), ((97, 61), 48)])
def test_tiled_equals_untiled_for_odd_sizes(random_network, size, tile_size):
    image = synthetic_large_image(*size)
    untiled = random_network(image).numpy()
    tiled = tiled_stylize(random_network, image, tile_size).numpy()
    assert tiled.shape == untiled.shape
    assert np.abs(tiled - untiled).max() < TILED_VS_UNTILED_MAX_ABS


@pytest.mark.slow
def test_tiled_equals_untiled_inside_a_tf_function(random_network):
    image = synthetic_large_image(120, 176)
    graph = tf.function(lambda x: tiled_stylize(random_network, x, 40),
                        input_signature=[tf.TensorSpec([1, None, None, 3])])
    assert np.abs(graph(image).numpy() - random_network(image).numpy()).max() < TILED_VS_UNTILED_MAX_ABS


def test_halos_are_the_spread_of_the_layers(random_network):
    """Johnson et al.'s encoder spreads a tile edge's wrong values 2 quarter-resolution pixels, the decoder 7 pixels."""
    assert tiled_network.encoder_halo(random_network) == 8 and tiled_network.decoder_halo(random_network) == 2


@pytest.mark.parametrize("halo, narrower", [("encoder_halo", 4), ("decoder_halo", 1)])
def test_a_halo_one_step_narrower_breaks_the_equality(random_network, monkeypatch, halo, narrower):
    """The equality above holds because of the halos, not by accident, and the computed halos are the narrowest."""
    computed = getattr(tiled_network, halo)(random_network)
    monkeypatch.setattr(tiled_network, halo, lambda network: computed - narrower)
    image = synthetic_large_image(96, 96)
    assert np.abs(tiled_stylize(random_network, image, 32).numpy() - random_network(image).numpy()).max() > 1.0


@pytest.mark.slow
def test_large_image_tiled_matches_untiled_and_shows_no_seams(starry_night):
    """A bundled model on a 512x384 test card cut into 128-pixel tiles (12 tiles)."""
    image = synthetic_large_image(384, 512)
    untiled = starry_night(image).numpy()[0]
    tiled = tiled_stylize(starry_night, image, 128).numpy()[0]
    assert np.abs(tiled - untiled).max() < TILED_VS_UNTILED_MAX_ABS
    # The untiled image has no tiles: its score is what this picture gives at the boundary phase.
    assert abs(seam_ratio(tiled, 128) - seam_ratio(untiled, 128)) < SEAM_RATIO_TOLERANCE

    # What hand tiling does, each tile stylized alone (own statistics, no halo): visible seams.
    naive = np.concatenate([np.concatenate([starry_night(image[:, top:top + 128, left:left + 128]).numpy()[0]
                                            for left in range(0, 512, 128)], axis=1)
                            for top in range(0, 384, 128)], axis=0)
    # What makes hand tiling wrong: each tile's own statistics shift its colours, and the steps at the tile
    # boundaries stand out well beyond the tiled result's tolerance. How far beyond depends on how the network
    # has learnt to answer each tile's own statistics (it shrank as starry_night trained on), so the margin is a
    # multiple of the tolerance rather than a figure of one bundle.
    assert np.abs(naive - untiled).mean() > 5.0
    assert seam_ratio(naive, 128) > seam_ratio(untiled, 128) + 25 * SEAM_RATIO_TOLERANCE


def test_seam_ratio_sees_a_step_at_tile_boundaries():
    ramp = np.tile(np.arange(256, dtype=np.float64)[None, :, None], (256, 1, 3))
    assert seam_ratio(ramp, 64) == pytest.approx(1.0)
    stepped = ramp + 10.0 * (np.arange(256)[None, :, None] // 64)  # A step of 10 at each vertical boundary.
    assert seam_ratio(stepped, 64) == pytest.approx((3 * 11 + 3 * 0) / (3 + 3) / ((12 * 1 + 12 * 0) / 24))
    phased = ramp + 10.0 * ((np.arange(256)[None, :, None] + 1) % 16 == 0)  # The same at every 16th pair: no seam.
    assert seam_ratio(phased, 64) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no 128-pixel tile boundary"):
        seam_ratio(ramp[:100, :100], 128)


@pytest.mark.slow
def test_stylizer_tiles_only_above_the_threshold(random_network):
    image = synthetic_large_image(64, 80)[0]
    below = FastStylizer(random_network, tiling=Tiling(tile_pixels=64 * 80, tile_size=32))
    above = FastStylizer(random_network, tiling=Tiling(tile_pixels=64 * 80 - 1, tile_size=32))
    never = FastStylizer(random_network, tiling=Tiling.never())
    results = [stylizer.stylize(image) for stylizer in (below, above, never)]
    assert below._forward_tiled.experimental_get_tracing_count() == 0
    assert above._forward_tiled.experimental_get_tracing_count() == 1
    assert never._forward_tiled.experimental_get_tracing_count() == 0
    assert max(np.abs(result - results[2]).max() for result in results) < TILED_VS_UNTILED_MAX_ABS


@pytest.mark.parametrize("options", [{"tile_size": 30}, {"tile_size": 8}, {"tile_pixels": -1}])
def test_bad_tiling_options_are_refused(options):
    with pytest.raises(InvalidInputError, match="tile"):
        Tiling(**options)


def _stylize(*args):
    return subprocess.run([*IMPASTO_COMMAND, "stylize", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.subprocess
def test_cli_tile_flags(tmp_path, data_dir, capsys):
    """--tile forces tiles, --no-tile forbids them; both give the same picture; bad values exit 2."""
    common = ["--model", "starry_night", data_dir / "chelsea.png", "--no-progress"]
    assert _stylize(*common, "--tile", 64, "--out", tmp_path / "tiled.png").returncode == 0
    assert _stylize(*common, "--no-tile", "--out", tmp_path / "whole.png").returncode == 0
    tiled, whole = (np.asarray(Image.open(tmp_path / name), np.int16) for name in ("tiled.png", "whole.png"))
    assert np.abs(tiled - whole).max() <= 1  # Rounding to 8 bits.

    code, stderr = run_cli_in_process(capsys, "stylize", *common, "--tile", 30, "--out", tmp_path / "bad.png")
    assert code == 2 and "tile size must be a multiple of 4" in stderr
    code, stderr = run_cli_in_process(capsys, "stylize", *common, "--tile", 64, "--no-tile",
                                      "--out", tmp_path / "bad.png")
    assert code == 2 and "not allowed with" in stderr
    assert not (tmp_path / "bad.png").exists()
