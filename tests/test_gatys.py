"""The optimization method: plumbing on a tiny random VGG, quality on the real one."""

from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from impasto.model import color, image_io
from impasto.model.optimize.gatys import GatysConfig, GatysStylizer, blended_style_grams, make_objective
from impasto.model.optimize.optimizers import OptimizerConfig

from conftest import load_test_image


@pytest.fixture(scope="module")
def content():
    return load_test_image("chelsea.png")


@pytest.fixture(scope="module")
def style():
    return load_test_image("starry_night.png")


def _run(vgg, content, styles, blend=None, **changes):
    config = replace(GatysConfig.tiny(), **changes)
    reports = []
    image = GatysStylizer(config, vgg).stylize(content, styles, blend_weights=blend, on_progress=reports.append)
    return image, reports


@pytest.mark.slow
def test_loss_goes_down_and_the_output_keeps_the_contract(tiny_vgg, content, style):
    image, reports = _run(tiny_vgg, content, [style], iterations=20, report_every=5)
    values = [report.value for report in reports]
    assert values[-1] < values[0]
    assert image.dtype == np.float32 and max(image.shape[:2]) == 64 and image.shape[2] == 3
    assert image.min() >= 0.0 and image.max() <= 255.0
    assert {"content", "style", "tv"} <= set(reports[-1].terms)


@pytest.mark.slow
def test_the_value_reported_is_that_of_the_image_delivered_unless_unbounded(tiny_vgg, content, style):
    """Bounded (the default), the optimizer's iterate is the image delivered; unbounded, the iterate leaves
    [0, 255], and the clipped image it delivers scores worse than the value reported and than the bounded one."""
    config = GatysConfig.tiny()
    photo = image_io.resize_long_side(content, config.size)
    loss = config.loss
    content_targets = tiny_vgg(tf.constant(photo[None]), [layer for layer, _ in loss.content_layers])
    grams = blended_style_grams(tiny_vgg, [image_io.resize_long_side(style, config.size)], [1.0],
                                [layer for layer, _ in loss.style_layers])
    objective, _ = make_objective(tiny_vgg, photo.shape, content_targets, grams, loss)
    delivered, reported = {}, {}
    for bounded in (True, False):
        image, reports = _run(tiny_vgg, content, [style], init="noise", iterations=20, report_every=20,
                              bounded=bounded)
        delivered[bounded] = float(objective(tf.constant(image.reshape(-1)))[0])
        reported[bounded] = reports[-1].value
    assert delivered[True] == pytest.approx(reported[True], rel=1e-5)
    assert delivered[False] > 1.002 * reported[False]
    assert delivered[True] < delivered[False]


@pytest.mark.slow
def test_pyramid_runs_every_stage_and_ends_at_full_size(tiny_vgg, content, style):
    config = replace(GatysConfig.tiny(), size=128, scales=2)
    assert config.stage_sizes() == [64, 128]
    reports = []
    image = GatysStylizer(config, tiny_vgg).stylize(content, [style], on_progress=reports.append)
    assert sorted({report.stage for report in reports}) == [0, 1]
    assert max(image.shape[:2]) == 128


def test_preserve_color_keeps_the_content_chrominance(tiny_vgg, content, style):
    image, _ = _run(tiny_vgg, content, [style], preserve_color=True, iterations=10)
    small_content = tf.image.resize(content, image.shape[:2], antialias=True).numpy()
    result_iq = color.rgb_to_yiq(image)[..., 1:].numpy()
    content_iq = color.rgb_to_yiq(small_content)[..., 1:].numpy()
    assert np.abs(result_iq - content_iq).mean() < 3.0


@pytest.mark.slow
def test_blend_weights_select_and_mix_styles(tiny_vgg, content, style):
    other = load_test_image("great_wave.png")
    only_first, _ = _run(tiny_vgg, content, [style, other], blend=[1.0, 0.0])
    single, _ = _run(tiny_vgg, content, [style])
    np.testing.assert_allclose(only_first, single, atol=1e-3)
    mixed, _ = _run(tiny_vgg, content, [style, other], blend=[0.5, 0.5])
    assert np.abs(mixed - single).mean() > 0.01
    with pytest.raises(ValueError, match="blend weight"):
        _run(tiny_vgg, content, [style, other], blend=[1.0])


@pytest.mark.slow
def test_noise_init_is_seeded(tiny_vgg, content, style):
    first, _ = _run(tiny_vgg, content, [style], init="noise", seed=1, iterations=2)
    again, _ = _run(tiny_vgg, content, [style], init="noise", seed=1, iterations=2)
    other, _ = _run(tiny_vgg, content, [style], init="noise", seed=2, iterations=2)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 1.0


def test_init_from_a_file_starts_from_that_image(tiny_vgg, content, style):
    config = replace(GatysConfig.tiny(), init="file", iterations=1)
    init_image = load_test_image("coffee.png")
    result = GatysStylizer(config, tiny_vgg).stylize(content, [style], init_image=init_image)
    resized_init = tf.image.resize(init_image, result.shape[:2], antialias=True).numpy()
    resized_content = tf.image.resize(content, result.shape[:2], antialias=True).numpy()
    assert np.abs(result - resized_init).mean() < np.abs(result - resized_content).mean()


def test_adam_is_an_option(tiny_vgg, content, style):
    _, reports = _run(tiny_vgg, content, [style], optimizer=OptimizerConfig(method="adam", learning_rate=5.0),
                      iterations=10, report_every=1)
    assert reports[-1].value < reports[0].value


def test_real_weights_transfer_the_style_and_keep_the_content(imagenet_vgg, content, style):
    """With ImageNet VGG16, 30 L-BFGS iterations at 96 px cut the style loss by most of its initial value."""
    config = replace(GatysConfig.tiny(), size=96, iterations=30, report_every=1)
    reports = []
    image = GatysStylizer(config, imagenet_vgg).stylize(content, [style], on_progress=reports.append)
    assert reports[0].iteration == 1 and reports[-1].iteration == 30
    assert reports[-1].terms["style"] < 0.3 * reports[0].terms["style"]
    small_content = tf.image.resize(content, image.shape[:2], antialias=True).numpy()
    assert np.abs(image - small_content).mean() > 5.0  # It changed the pixels ...
    correlation = np.corrcoef(image.mean(axis=2).ravel(), small_content.mean(axis=2).ravel())[0, 1]
    assert correlation > 0.5  # ... but the photo is still there.
