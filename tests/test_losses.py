"""The perceptual losses against hand-computed values."""

import numpy as np
import pytest
import tensorflow as tf

from impasto.model.lossnet import losses
from impasto.model.lossnet.loss_config import LossConfig


def test_gram_matrix_matches_a_hand_computed_value():
    # One image, 2x1 positions, 2 channels: F = [[1, 2], [3, 4]].
    features = tf.constant([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    # F^T F = [[1+9, 2+12], [2+12, 4+16]] = [[10, 14], [14, 20]]; divided by H*W*C = 2*1*2 = 4.
    np.testing.assert_allclose(losses.gram_matrix(features).numpy(), [[[2.5, 3.5], [3.5, 5.0]]])


def test_gram_matrix_does_not_depend_on_image_size():
    rng = np.random.default_rng(0)
    tile = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    tiled = np.tile(tile, (1, 3, 2, 1))
    np.testing.assert_allclose(losses.gram_matrix(tile), losses.gram_matrix(tiled), rtol=1e-5)


def test_content_loss_is_weighted_mean_squared_error():
    features = {"a": tf.constant([[[[1.0, 3.0]]]])}
    targets = {"a": tf.constant([[[[0.0, 0.0]]]])}
    total, terms = losses.content_loss(features, targets, {"a": 2.0})
    assert float(total) == pytest.approx(2.0 * (1.0 + 9.0) / 2)
    assert set(terms) == {"content/a"}


def test_style_loss_is_weighted_squared_frobenius_distance():
    features = {"a": tf.constant([[[[1.0, 2.0]], [[3.0, 4.0]]]])}
    target = {"a": tf.zeros([1, 2, 2])}
    total, terms = losses.style_loss(features, target, {"a": 0.5})
    assert float(total) == pytest.approx(0.5 * (2.5**2 + 2 * 3.5**2 + 5.0**2))
    assert float(terms["style/a"]) == pytest.approx(float(total))


def test_total_variation_of_a_ramp():
    ramp = tf.reshape(tf.range(4.0), [1, 1, 4, 1]) * tf.ones([1, 2, 4, 3])  # +1 per column, same rows.
    total, terms = losses.total_variation_loss(ramp, weight=3.0)
    assert float(total) == pytest.approx(3.0 * (0.0 + 1.0))
    assert float(terms["tv"]) == pytest.approx(float(total))


def test_style_transfer_loss_parts_sum_to_the_total(tiny_vgg):
    config = LossConfig.gatys()
    rng = np.random.default_rng(1)
    image, content, style = (rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.float32) for _ in range(3))
    content_targets = tiny_vgg(content, [layer for layer, _ in config.content_layers])
    style_features = tiny_vgg(style, [layer for layer, _ in config.style_layers])
    grams = {layer: losses.gram_matrix(value) for layer, value in style_features.items()}
    total, terms = losses.style_transfer_loss(image, tiny_vgg(image, config.all_layers), content_targets, grams, config)
    assert float(total) == pytest.approx(float(terms["content"] + terms["style"] + terms["tv"]), rel=1e-5)
    per_layer = sum(float(v) for k, v in terms.items() if k.startswith(("content/", "style/")))
    assert per_layer == pytest.approx(float(terms["content"] + terms["style"]), rel=1e-5)


def test_loss_config_presets_and_layer_weights():
    gatys = LossConfig.gatys()
    assert gatys.content_layers == (("block4_conv2", 1.0),)
    assert [layer for layer, _ in gatys.style_layers] == [f"block{b}_conv1" for b in range(1, 6)]
    assert gatys.style_layer_weights["block1_conv1"] == pytest.approx(gatys.style_weight)
    johnson = LossConfig.johnson()
    assert "block2_conv2" in johnson.all_layers and len(set(johnson.all_layers)) == len(johnson.all_layers)


# Plain forms of the losses' hand-written gradients: the textbook formula, differentiated by TensorFlow.


def _plain_gram(features: tf.Tensor) -> tf.Tensor:
    _, height, width, channels = features.shape
    return tf.einsum("nhwi,nhwj->nij", features, features) / (height * width * channels)


def _plain_total_variation(images: tf.Tensor) -> tf.Tensor:
    down = images[:, 1:] - images[:, :-1]
    right = images[:, :, 1:] - images[:, :, :-1]
    return tf.reduce_mean(tf.square(down)) + tf.reduce_mean(tf.square(right))


def _value_and_gradient(function, tensor: tf.Tensor, upstream: tf.Tensor):
    with tf.GradientTape() as tape:
        tape.watch(tensor)
        value = function(tensor)
        weighted = tf.reduce_sum(value * upstream)
    return value, tape.gradient(weighted, tensor)


@pytest.mark.parametrize("shape", [(1, 5, 7, 4), (2, 3, 6, 5)])  # The batch-of-one path and the batched one.
def test_gram_matrix_gradient_matches_autodiff_of_the_plain_formula(shape):
    rng = np.random.default_rng(5)
    features = tf.constant(rng.normal(size=shape), tf.float32)
    upstream = tf.constant(rng.normal(size=(shape[0], shape[3], shape[3])), tf.float32)  # Not symmetric.
    fast_value, fast_gradient = _value_and_gradient(losses.gram_matrix, features, upstream)
    plain_value, plain_gradient = _value_and_gradient(_plain_gram, features, upstream)
    np.testing.assert_allclose(fast_value, plain_value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast_gradient, plain_gradient, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 6, 9, 3), (2, 2, 5, 3)])
def test_total_variation_gradient_matches_autodiff_of_the_plain_formula(shape):
    images = tf.constant(np.random.default_rng(6).uniform(0, 255, shape), tf.float32)
    fast_value, fast_gradient = _value_and_gradient(lambda x: losses.total_variation_loss(x, 0.7)[0], images, 1.0)
    plain_value, plain_gradient = _value_and_gradient(lambda x: 0.7 * _plain_total_variation(x), images, 1.0)
    np.testing.assert_allclose(fast_value, plain_value, rtol=1e-5)
    np.testing.assert_allclose(fast_gradient, plain_gradient, rtol=1e-4, atol=1e-4)
