"""Widening a trained network (Net2WiderNet): the same function at a multiple of the width."""

import numpy as np
import pytest

from impasto.model.feedforward.bundles import load_bundle_arrays
from impasto.model.feedforward.transformer import TransformerNet
from impasto.model.feedforward.widen import widen_weights, widening_factor

from conftest import load_test_image


def test_widening_factors_are_whole_multiples_of_every_channel_count():
    assert widening_factor(0.5, 1.0) == 2 and widening_factor(0.25, 1.0) == 4 and widening_factor(0.5, 0.5) == 1
    assert widening_factor(0.5, 0.75) is None and widening_factor(1.0, 0.5) is None
    assert widening_factor(0.0625, 0.125) is None  # 4, 4, 8 (the floor of 4) -> 4, 8, 16


def test_a_bundled_model_widened_to_full_width_stylizes_as_it_did():
    arrays, metadata = load_bundle_arrays("great_wave")
    narrow = TransformerNet(width=metadata["width"])
    narrow.load_weights_dict(arrays)
    wide = TransformerNet(width=1.0)
    wide.load_weights_dict(widen_weights(arrays, widening_factor(metadata["width"], 1.0)))
    assert wide.weights_dict()["residuals/0/first/kernel"].shape == (3, 3, 128, 128)
    photo = load_test_image("starry_night.png")[None, :72, :88].astype(np.float32)
    np.testing.assert_allclose(wide(photo).numpy(), narrow(photo).numpy(), atol=2e-3)


def test_the_copies_split_each_reading_kernel_unevenly_and_exactly():
    kernel = np.random.default_rng(1).normal(size=[3, 3, 4, 5]).astype(np.float32)
    arrays = {"residuals/0/first/kernel": kernel, "residuals/0/first/bias": np.arange(5, dtype=np.float32)}
    wide = widen_weights(arrays, 2)
    split = wide["residuals/0/first/kernel"]  # [3, 3, 8, 10]
    np.testing.assert_allclose(split[:, :, :4, :5] + split[:, :, 4:, :5], kernel, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(split[..., :5], split[..., 5:])
    np.testing.assert_array_equal(wide["residuals/0/first/bias"], np.tile(np.arange(5), 2))
    shares = split[:, :, :4, :5] / kernel
    assert shares.min() < 0.45 and shares.max() > 0.55  # uneven: the copies' gradients differ in direction
    assert np.array_equal(widen_weights(arrays, 2)["residuals/0/first/kernel"], split)  # seeded


def test_the_rgb_ends_keep_three_channels():
    arrays = {"encoder/0/kernel": np.ones([9, 9, 3, 4], np.float32), "output_conv/kernel": np.ones([9, 9, 4, 3]),
              "output_conv/bias": np.zeros([3], np.float32)}
    wide = widen_weights(arrays, 2)
    assert wide["encoder/0/kernel"].shape == (9, 9, 3, 8) and wide["output_conv/kernel"].shape == (9, 9, 8, 3)
    assert wide["output_conv/bias"].shape == (3,)
    with pytest.raises(ValueError, match="positive integer"):
        widen_weights(arrays, 1.5)
