"""The optimization method, tile by tile: the same objective, gradient and result as whole."""

import subprocess
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from impasto.model.errors import InvalidInputError
from impasto.model.lossnet.loss_config import LossConfig
from impasto.model.optimize import tiled_objective
from impasto.model.optimize.gatys import GatysConfig, GatysStylizer, blended_style_grams, make_objective
from impasto.model.optimize.tiled_objective import make_tiled_objective, tiled_features, tiled_grams
from impasto.model.tiling import Tiling
from impasto.testing import IMPASTO_COMMAND

from conftest import load_test_image

# Layers up to block3 keep the halo at 32 px, so 32 px tiles of a ~150 px image are real tiles.
LOSS = LossConfig(content_layers=(("block3_conv2", 1.0),),
                  style_layers=(("block1_conv1", 1.0), ("block2_conv1", 1.0), ("block3_conv1", 1.0)),
                  style_weight=1e-3)


@pytest.fixture(scope="module")
def images():
    content = tf.image.resize(load_test_image("chelsea.png")[None], [150, 181]).numpy()[0]
    return content, load_test_image("starry_night.png")


def _relative_error(actual, expected) -> float:
    return float(tf.reduce_max(tf.abs(actual - expected)) / tf.reduce_max(tf.abs(expected)))


def test_halo_covers_the_deepest_layer(tiny_vgg):
    assert tiny_vgg.receptive_radius("block1_conv1") == 1
    assert tiny_vgg.receptive_radius("block5_conv1") == 73  # 58 from 13 convs, 15 from 4 pools.
    assert tiled_objective.vgg_halo(tiny_vgg, ["block1_conv1", "block5_conv1"]) == 80
    assert tiled_objective.vgg_halo(tiny_vgg, ["block3_conv2"]) == 32


def test_tiled_features_and_grams_equal_whole(tiny_vgg, images):
    content, style = images
    layers = [layer for layer, _ in LOSS.style_layers]
    whole = tiny_vgg(tf.constant(content[None]), ["block3_conv2"])["block3_conv2"]
    tiled = tiled_features(tiny_vgg, tf.constant(content[None]), ["block3_conv2"], 32)["block3_conv2"]
    assert tiled.shape == whole.shape and _relative_error(tiled, whole) < 1e-5
    grams = tiled_grams(tiny_vgg, style[None], layers, 32)
    for layer, expected in blended_style_grams(tiny_vgg, [style], [1.0], layers).items():
        assert _relative_error(grams[layer], expected) < 1e-5


def _objectives(vgg, content, style):
    targets = vgg(tf.constant(content[None]), ["block3_conv2"])
    grams = blended_style_grams(vgg, [style], [1.0], [layer for layer, _ in LOSS.style_layers])
    whole, names = make_objective(vgg, content.shape, targets, grams, LOSS)
    tiled, tiled_names = make_tiled_objective(vgg, content.shape, targets, grams, LOSS, 32)
    assert names == tiled_names
    return whole, tiled


@pytest.mark.slow
def test_tiled_objective_equals_whole_value_gradient_and_terms(tiny_vgg, images):
    content, style = images
    whole, tiled = _objectives(tiny_vgg, content, style)
    x = tf.constant((0.6 * content + 40.0).reshape(-1))
    value, gradient, terms = whole(x)
    for evaluate in (tiled, tf.function(tiled)):  # Eagerly and as a graph (as the optimizer runs it).
        tiled_value, tiled_gradient, tiled_terms = evaluate(x)
        assert float(tiled_value) == pytest.approx(float(value), rel=1e-5)
        assert _relative_error(tiled_gradient, gradient) < 1e-4
        np.testing.assert_allclose(tiled_terms.numpy(), terms.numpy(), rtol=1e-4)


def test_a_halo_short_of_the_receptive_field_changes_the_gradient(tiny_vgg, images, monkeypatch):
    content, style = images
    whole, _ = _objectives(tiny_vgg, content, style)
    monkeypatch.setattr(tiled_objective, "vgg_halo", lambda vgg, layers: 0)
    _, short = _objectives(tiny_vgg, content, style)
    x = tf.constant(content.reshape(-1))
    assert _relative_error(short(x)[1], whole(x)[1]) > 1e-2


@pytest.mark.slow
def test_stylizer_tiles_large_stages_to_the_same_result(tiny_vgg, images):
    """L-BFGS amplifies float rounding (a 0.01-level nudge of the content moves some pixels by 50 levels
    after 6 iterations here), so the runs are compared by loss and by mean difference."""
    content, style = images
    config = replace(GatysConfig.tiny(), size=128, iterations=3, scales=2, loss=LOSS, report_every=3)
    runs = {}
    # Only the 128 px stage (128 x 106 = 13 568 pixels) and the style image are tiled, in 32 px tiles.
    for name, tiling in (("whole", Tiling.never()), ("tiled", Tiling(tile_pixels=10_000, tile_size=32))):
        reports = []
        image = GatysStylizer(replace(config, tiling=tiling), tiny_vgg).stylize(content, [style],
                                                                               on_progress=reports.append)
        runs[name] = image, [report.value for report in reports]
    (whole, whole_losses), (tiled, tiled_losses) = runs["whole"], runs["tiled"]
    assert tiled.shape == whole.shape and len(tiled_losses) == len(whole_losses) == 2
    np.testing.assert_allclose(tiled_losses, whole_losses, rtol=1e-3)
    assert np.abs(tiled - whole).mean() < 0.3
    assert np.abs(whole - tf.image.resize(content[None], whole.shape[:2], antialias=True)[0].numpy()).mean() > 1.0


@pytest.mark.subprocess
def test_optimize_tiles_must_be_multiples_of_16(tmp_path, data_dir):
    with pytest.raises(InvalidInputError, match="multiple of 16"):
        tiled_objective.check_tile_size(40)
    out = tmp_path / "out.png"
    finished = subprocess.run([*IMPASTO_COMMAND, "stylize", data_dir / "chelsea.png",
                               "--style", data_dir / "starry_night.png", "--tile", "40", "--out", out],
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 2 and "multiple of 16" in finished.stderr and not out.exists()
