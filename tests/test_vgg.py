"""The VGG feature extractor: preprocessing, layer selection, and proof that the weights are ImageNet's."""

import numpy as np
import pytest
import tensorflow as tf

from impasto.model import image_io
from impasto.model.lossnet.vgg import VggFeatures
from impasto.testing import random_vgg_weights

from conftest import load_test_image

CATS = ["chelsea", "black_cat", "kitten"]
NOT_CATS = ["coffee", "rocket", "fruits"]  # Objects; a koala is too close to a kitten to be fair.


def _embeddings(network: VggFeatures) -> dict[str, np.ndarray]:
    """Globally average-pooled block5_conv3 features, unit length, for each test photo."""
    embeddings = {}
    for name in CATS + NOT_CATS:
        image = image_io.resize_image(load_test_image(f"{name}.png"), 128, 128)[None]
        pooled = tf.reduce_mean(network(image, ["block5_conv3"])["block5_conv3"], axis=[1, 2])[0].numpy()
        embeddings[name] = pooled / np.linalg.norm(pooled)
    return embeddings


def _cats_are_closest_to_cats(embeddings) -> bool:
    cat_pairs = [embeddings[a] @ embeddings[b] for a in CATS for b in CATS if a < b]
    mixed_pairs = [embeddings[a] @ embeddings[b] for a in CATS for b in NOT_CATS]
    return min(cat_pairs) > max(mixed_pairs) + 0.1


def test_imagenet_features_know_a_cat_from_a_coffee_cup(imagenet_weights):
    assert _cats_are_closest_to_cats(_embeddings(VggFeatures(imagenet_weights, pooling="max")))


def test_random_weights_fail_the_same_check():
    assert not _cats_are_closest_to_cats(_embeddings(VggFeatures(random_vgg_weights(seed=0))))


def test_returns_exactly_the_requested_layers_with_vgg_strides(tiny_vgg):
    images = np.zeros((2, 64, 48, 3), np.float32)
    features = tiny_vgg(images, ["block1_conv2", "block3_conv1", "block5_conv1"])
    assert set(features) == {"block1_conv2", "block3_conv1", "block5_conv1"}
    assert features["block1_conv2"].shape[:3] == (2, 64, 48)
    assert features["block3_conv1"].shape[:3] == (2, 16, 12)
    assert features["block5_conv1"].shape[:3] == (2, 4, 3)


def test_unknown_layer_is_refused(tiny_vgg):
    with pytest.raises(ValueError, match="unknown VGG layers"):
        tiny_vgg(np.zeros((1, 16, 16, 3), np.float32), ["block6_conv1"])


def test_caffe_preprocessing_is_bgr_minus_the_imagenet_mean(tiny_vgg):
    pixel = np.array([[[[10.0, 20.0, 30.0]]]], np.float32)
    np.testing.assert_allclose(tiny_vgg.preprocess(pixel).numpy()[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68],
                               rtol=1e-6)


def test_average_and_max_pooling_differ(tiny_vgg_weights):
    image = load_test_image("chelsea.png")[None, :64, :64]
    average = VggFeatures(tiny_vgg_weights, pooling="avg")(image, ["block2_conv1"])["block2_conv1"]
    maximum = VggFeatures(tiny_vgg_weights, pooling="max")(image, ["block2_conv1"])["block2_conv1"]
    assert float(tf.reduce_mean(maximum)) > float(tf.reduce_mean(average))


def test_every_convolution_filter_is_a_graph_constant(tiny_vgg):
    """oneDNN caches its reordered filter only for constant filters; a variable read would undo that."""
    trace = tf.function(lambda images: tiny_vgg(images, ["block3_conv1"])["block3_conv1"])
    graph = trace.get_concrete_function(tf.TensorSpec([1, 32, 32, 3], tf.float32)).graph
    convolutions = [op for op in graph.get_operations() if op.type == "Conv2D"]
    assert len(convolutions) == 5  # block1_conv1 .. block3_conv1.
    assert all(op.inputs[1].op.type == "Const" for op in convolutions)
    assert not graph.variables
