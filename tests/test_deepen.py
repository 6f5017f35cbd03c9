"""Deepening a trained network (Net2DeeperNet): the same function with more residual blocks."""

import numpy as np
import pytest
import tensorflow as tf

from impasto.model.errors import InvalidInputError
from impasto.model.feedforward.bundles import (
    BUNDLED_DIR,
    bundled_model_names,
    check_format,
    load_bundle_arrays,
    load_network,
    write_bundle,
)
from impasto.model.feedforward.deepen import NEW_BLOCK_AMPLITUDE, deepen_weights
from impasto.model.feedforward.layout import residual_block_count
from impasto.model.feedforward.reference_transformer import ReferenceTransformer
from impasto.model.feedforward.transformer import TransformerNet

from conftest import load_test_image


def _photo() -> np.ndarray:
    return load_test_image("starry_night.png")[None, :72, :88].astype(np.float32)


def test_the_block_count_is_read_from_the_variables():
    assert residual_block_count(load_bundle_arrays("great_wave")[0]) == 5
    assert residual_block_count(TransformerNet(width=0.125, residual_blocks=2).weights_dict()) == 2
    assert residual_block_count({"residuals/11/first/kernel": 0, "residuals/2/second/bias": 0}) == 12
    assert residual_block_count({"encoder/0/kernel": 0}) == 0


def _psnr(image: np.ndarray, reference: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((image - reference) ** 2)))


def test_a_bundled_model_deepened_stylizes_nearly_as_it_did_and_exactly_at_amplitude_zero():
    arrays, metadata = load_bundle_arrays("great_wave")
    shallow = load_network("great_wave")[0](_photo()).numpy()
    for amplitude, at_least_db in ((0.0, None), (NEW_BLOCK_AMPLITUDE, 38.0)):
        deepened = deepen_weights(arrays, 6, amplitude)
        deep = TransformerNet(width=metadata["width"], residual_blocks=6)
        deep.load_weights_dict(deepened)
        output = deep(_photo()).numpy()
        if at_least_db is None:
            np.testing.assert_array_equal(output, shallow)
        else:
            assert at_least_db <= _psnr(output, shallow) < 70.0  # close, but the new blocks do something
        np.testing.assert_allclose(ReferenceTransformer(deepened)(_photo()).numpy(), output, atol=2e-3)


def test_each_new_block_is_the_last_one_at_a_tenth_of_its_amplitude_and_learns_from_the_first_step():
    shallow = TransformerNet(width=0.125, residual_blocks=2, seed=4)
    trained = shallow.weights_dict()
    deepened = deepen_weights(trained, 4)
    for path, value in trained.items():
        np.testing.assert_array_equal(deepened[path], value)  # the trained blocks are kept as they were
    for index in (2, 3):
        for suffix in ("first/kernel", "first/scale", "second/kernel", "second/bias"):
            np.testing.assert_array_equal(deepened[f"residuals/{index}/{suffix}"], trained[f"residuals/1/{suffix}"])
        np.testing.assert_allclose(deepened[f"residuals/{index}/second/scale"],
                                   NEW_BLOCK_AMPLITUDE * trained["residuals/1/second/scale"])
    network = TransformerNet(width=0.125, residual_blocks=4)
    network.load_weights_dict(deepened)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(network(_photo()[:, :32, :32]) - 128.0))
    for gradient in tape.gradient(loss, [network.residuals[3].first.kernel, network.residuals[3].second.scale]):
        assert np.abs(gradient.numpy()).max() > 0


def test_a_network_is_not_made_shallower():
    arrays = TransformerNet(width=0.125, residual_blocks=3).weights_dict()
    with pytest.raises(ValueError, match="has 3 residual blocks; it cannot be deepened to 2"):
        deepen_weights(arrays, 2)
    with pytest.raises(ValueError, match="positive whole number of residual blocks"):
        TransformerNet(width=0.125, residual_blocks=0)


def test_a_deeper_bundle_round_trips_with_its_block_count(tmp_path):
    network = TransformerNet(width=0.125, residual_blocks=6, seed=3)
    write_bundle(network, {"width": 0.125, "residual_blocks": 6, "style": "random"}, tmp_path / "deep.npz")
    loaded, metadata = load_network(tmp_path / "deep.npz")
    assert loaded.residual_blocks == 6 and metadata["residual_blocks"] == 6
    np.testing.assert_allclose(loaded(_photo()).numpy(), network(_photo()).numpy(), atol=1.0)


@pytest.mark.parametrize("blocks", [0, -1, 2.5, "seven", True])
def test_metadata_with_a_block_count_that_is_not_a_positive_whole_number_is_refused(tmp_path, blocks):
    with pytest.raises(InvalidInputError, match="residual_blocks"):
        check_format({"format": "impasto-transformer/1", "width": 1.0, "residual_blocks": blocks}, tmp_path / "m.json")



BUNDLE_BYTES_LIMIT = 4_000_000
"""Bundles ship inside the package: each stays under 4 MB (issue 14)."""


def test_every_bundled_model_stays_under_4_mb_and_full_width_has_room_for_a_sixth_block(tmp_path):
    for name in bundled_model_names():
        assert (BUNDLED_DIR / f"{name}.npz").stat().st_size < BUNDLE_BYTES_LIMIT, name
    write_bundle(TransformerNet(width=1.0, residual_blocks=6), {"width": 1.0, "style": "random"}, tmp_path / "6.npz")
    assert (tmp_path / "6.npz").stat().st_size < BUNDLE_BYTES_LIMIT
    write_bundle(TransformerNet(width=1.0, residual_blocks=7), {"width": 1.0, "style": "random"}, tmp_path / "7.npz")
    assert (tmp_path / "7.npz").stat().st_size > BUNDLE_BYTES_LIMIT
