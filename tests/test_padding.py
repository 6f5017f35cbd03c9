"""Padding by gathering (`impasto.model.feedforward.padding`) against numpy's np.pad, for every rule and odd amounts."""

import numpy as np
import pytest
import tensorflow as tf

from impasto.model.feedforward import padding


def _image(height: int, width: int) -> np.ndarray:
    return np.arange(2 * height * width * 3, dtype=np.float32).reshape(2, height, width, 3)


@pytest.mark.parametrize("height, width, target", [(3, 5, (11, 17)), (1, 1, (4, 4)), (4, 4, (4, 4))])
def test_edge_pad_matches_numpy_edge(height, width, target):
    image = _image(height, width)
    padded = padding.edge_pad(tf.constant(image), *target).numpy()
    amounts = ((0, 0), (0, target[0] - height), (0, target[1] - width), (0, 0))
    np.testing.assert_array_equal(padded, np.pad(image, amounts, mode="edge"))


def test_edge_pad_ends_the_image_at_its_valid_size():
    image = _image(6, 7)
    padded = padding.edge_pad(tf.constant(image), 8, 9, valid=tf.constant([4, 5])).numpy()
    np.testing.assert_array_equal(padded, np.pad(image[:, :4, :5], ((0, 0), (0, 4), (0, 4), (0, 0)), mode="edge"))


@pytest.mark.parametrize("size, pad", [(5, 1), (9, 4), (2, 1)])
def test_reflect_indices_match_numpy_reflect(size, pad):
    axis = np.arange(size)
    np.testing.assert_array_equal(padding.reflect_indices(size, pad).numpy(), np.pad(axis, pad, mode="reflect"))


def test_reflect_indices_reflect_at_the_valid_size():
    indices = padding.reflect_indices(8, 2, valid=tf.constant(5)).numpy()
    np.testing.assert_array_equal(indices[:9], np.pad(np.arange(5), 2, mode="reflect"))
    assert indices.shape == (12,) and indices.max() == 4


def test_mirror_pad_matches_numpy_symmetric_for_any_amount():
    image = _image(3, 5)
    padded = padding.mirror_pad(tf.constant(image), 11, 17).numpy()
    np.testing.assert_array_equal(padded, np.pad(image, ((0, 0), (0, 8), (0, 12), (0, 0)), mode="symmetric"))
