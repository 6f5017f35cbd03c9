"""The fast `TransformerNet` against its plain layer-by-layer form, `ReferenceTransformer`, on the same weights."""

import numpy as np
import pytest
import tensorflow as tf

from impasto.model.feedforward.bundles import load_network
from impasto.model.feedforward.noise_input import NOISE_PERIOD
from impasto.model.feedforward.reference_transformer import ReferenceTransformer, reflect_pad
from impasto.model.feedforward.transformer import TransformerNet

from conftest import load_test_image

# (height, width): multiples of 4, odd and other sizes (edge-padded inside), and one under MIN_SIDE.
SIZES = [(64, 96), (37, 50), (13, 22)]


def _random_network(seed: int, noise_channels: int = 0) -> TransformerNet:
    """A quarter-width network whose every variable (biases, norm scales and offsets too) is random."""
    network = TransformerNet(width=0.25, seed=seed, noise_channels=noise_channels)
    rng = np.random.default_rng(seed)
    network.load_weights_dict({path: value + rng.normal(0.0, 0.3, value.shape)
                               for path, value in network.weights_dict().items()})
    return network


def _photo(height: int, width: int) -> np.ndarray:
    """A crop of a real photo, float32 [1, height, width, 3] in [0, 255]."""
    return load_test_image("chelsea.png")[None, 40:40 + height, 60:60 + width]


@pytest.mark.parametrize("height, width", SIZES)
def test_reference_equals_fast_network_on_random_weights(height, width):
    network = _random_network(seed=height)
    reference = ReferenceTransformer(network.weights_dict())
    images = _photo(height, width)
    fast, plain = network(images).numpy(), reference(images).numpy()
    assert plain.shape == fast.shape == images.shape
    assert np.abs(plain - fast).max() < 0.05, np.abs(plain - fast).max()
    assert plain.std() > 1.0  # A picture, not a constant.


@pytest.mark.parametrize("height, width", SIZES)
def test_reference_equals_fast_network_on_a_bundled_model(height, width):
    network, _ = load_network("great_wave")
    reference = ReferenceTransformer(network.weights_dict())
    images = _photo(height, width)
    fast, plain = network(images).numpy(), reference(images).numpy()
    assert np.abs(plain - fast).max() < 0.05, np.abs(plain - fast).max()


def test_reference_equals_fast_network_reading_noise_beyond_one_period_of_it():
    network = _random_network(seed=2, noise_channels=2)
    images = np.concatenate([np.random.default_rng(0).uniform(0, 255, [1, 21, NOISE_PERIOD + 30, 3])] * 2)
    images = tf.constant(images, tf.float32)
    fast, plain = network(images).numpy(), ReferenceTransformer(network.weights_dict())(images).numpy()
    assert np.abs(plain - fast).max() < 0.05, np.abs(plain - fast).max()
    np.testing.assert_array_equal(fast[0], fast[1])  # every image of a batch reads the same noise


def test_reference_equals_fast_network_on_a_batch_in_a_function():
    network = _random_network(seed=1)
    reference = tf.function(ReferenceTransformer(network.weights_dict()),
                            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    images = np.concatenate([_photo(30, 41), _photo(30, 41)[:, ::-1]])
    assert np.abs(reference(images).numpy() - network(images).numpy()).max() < 0.05


def test_reference_refuses_weights_of_another_shape_of_network():
    weights = TransformerNet(width=0.25).weights_dict()
    del weights["residuals/4/second/scale"]
    with pytest.raises(ValueError, match="residuals/4/second/scale"):
        ReferenceTransformer(weights)
    with pytest.raises(ValueError, match="unknown"):
        ReferenceTransformer({**TransformerNet(width=0.25).weights_dict(), "extra/kernel": np.zeros(1)})


@pytest.mark.parametrize("pad", [1, 4])
def test_reflect_pad_by_slices_equals_mirror_pad(pad):
    x = tf.random.stateless_normal([2, 6, 9, 3], seed=(pad, 0))
    expected = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    np.testing.assert_array_equal(reflect_pad(x, pad).numpy(), expected.numpy())
