"""The fixed noise a transformer can read beside the photo: deterministic, tied to pixel positions, and added
to a trained network without changing what it computes."""

import numpy as np
import pytest
import tensorflow as tf

from impasto.model.feedforward.bundles import load_bundle_arrays, load_network, write_bundle
from impasto.model.feedforward.litert_network import NOISE_SCALE
from impasto.model.feedforward.noise_input import (
    NOISE_PERIOD,
    add_noise_input,
    noise_channel_count,
    noise_plane,
    noise_texture,
)
from impasto.model.feedforward.reference_transformer import ReferenceTransformer
from impasto.model.feedforward.transformer import TransformerNet

from conftest import load_test_image


def test_the_texture_is_the_same_standard_normal_draw_every_time():
    texture = noise_texture(2)
    assert texture.shape == (NOISE_PERIOD, NOISE_PERIOD, 2) and texture.dtype == np.float32
    np.testing.assert_array_equal(texture, noise_texture(2))
    assert abs(float(texture.mean())) < 0.01 and abs(float(texture.std()) - 1.0) < 0.01
    # Pinned: a network trained on the texture depends on these exact values (numpy's legacy stream).
    np.testing.assert_allclose(texture[0, 0], [0.5127, -0.7790], atol=1e-4)


def test_a_plane_repeats_the_texture_from_where_it_starts_in_the_image():
    texture = noise_texture(1, period=8)
    whole = noise_plane(tf.constant(texture), 20, 13).numpy()
    assert whole.shape == (20, 13, 1)
    np.testing.assert_array_equal(whole[:8, :8], texture)
    np.testing.assert_array_equal(whole[8:16, 8:13], texture[:, :5])
    tile = noise_plane(tf.constant(texture), 6, 7, top=5, left=3).numpy()
    np.testing.assert_array_equal(tile, whole[5:11, 3:10])


def test_added_noise_channels_start_at_zero_weight_so_a_bundled_model_stylizes_as_before():
    arrays, metadata = load_bundle_arrays("great_wave")
    photo = load_test_image("starry_night.png")[None, :72, :88].astype(np.float32)
    noisy_arrays = add_noise_input(arrays, 1)
    assert noise_channel_count(arrays) == 0 and noise_channel_count(noisy_arrays) == 1
    assert not noisy_arrays["encoder/0/kernel"][:, :, 3:].any()
    noisy = TransformerNet(width=metadata["width"], noise_channels=1)
    noisy.load_weights_dict(noisy_arrays)
    np.testing.assert_allclose(noisy(photo).numpy(), load_network("great_wave")[0](photo).numpy(), atol=1e-3)
    with pytest.raises(ValueError, match="reads 1 noise channels"):
        add_noise_input(noisy_arrays, 0)


def test_a_network_that_reads_noise_draws_texture_on_a_flat_photo_the_same_way_every_call(tmp_path):
    flat = np.full([1, 40, 48, 3], 120.0, np.float32)
    plain = TransformerNet(width=0.125, seed=3)
    plain_output = plain(flat).numpy()
    assert plain_output[0, 10:30, 10:38].std() < 1e-3  # away from the edges, a flat photo gives a flat picture
    noisy = TransformerNet(width=0.125, seed=3, noise_channels=1)
    output = noisy(flat).numpy()
    assert output[0, 10:30, 10:38].std() > 1.0
    np.testing.assert_array_equal(output, noisy(flat).numpy())
    # A bundle keeps it: the count is read back from the first conv's kernel.
    write_bundle(noisy, {"width": 0.125, "style": "test"}, tmp_path / "noisy.npz")
    loaded, metadata = load_network(str(tmp_path / "noisy.npz"))
    assert loaded.noise_channels == 1 and metadata["noise_channels"] == 1
    np.testing.assert_allclose(loaded(flat).numpy(), output, atol=1.0)  # the bundle's weights are float16


def test_the_plain_form_reads_the_texture_at_any_scale_as_the_same_function():
    """`ReferenceTransformer(noise_scale=s)` reads the texture times s and divides the noise taps by s (the LiteRT
    form reads it at `NOISE_SCALE`): the network's picture, in which the noise shows."""
    network = TransformerNet(width=0.125, seed=5, noise_channels=1)
    weights = network.weights_dict()
    weights["encoder/0/kernel"][:, :, 3:] *= 10.0  # so that the noise shows in the picture
    network.load_weights_dict(weights)
    photo = load_test_image("chelsea.png")[None, :60, :76].astype(np.float32)
    expected = network(photo).numpy()
    for scale in (1.0, NOISE_SCALE):
        stylized = ReferenceTransformer(weights, noise_scale=scale)(photo).numpy()
        assert np.abs(stylized - expected).max() < 0.01, (scale, np.abs(stylized - expected).max())
    without_noise = ReferenceTransformer(add_noise_input({**weights, "encoder/0/kernel": weights[
        "encoder/0/kernel"][:, :, :3]}, 1))(photo).numpy()
    assert np.abs(without_noise - expected).max() > 1.0
