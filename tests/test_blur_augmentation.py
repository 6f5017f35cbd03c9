"""Blur augmentation of training crops (`TrainConfig.blur_fraction`): the blur, the share, the crop."""

import numpy as np
import pytest
import tensorflow as tf

from impasto.training import data
from impasto.training.cli import run as train_run


def plain_gaussian_blur(image: np.ndarray, sigma: float, radius: int) -> np.ndarray:
    """The readable form: one normalised Gaussian row, applied down then across, edges mirrored."""
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(image.astype(np.float64), [(radius, radius), (radius, radius), (0, 0)], mode="reflect")
    height, width = image.shape[:2]
    down = sum(tap * padded[i:i + height] for i, tap in enumerate(taps))
    return sum(tap * down[:, i:i + width] for i, tap in enumerate(taps))


@pytest.mark.parametrize("size, sigma", [(40, 3.0), (20, 8.0)])
def test_blur_equals_its_plain_form(size, sigma):
    image = np.random.default_rng(size).uniform(0, 255, [size, size + 3, 3]).astype(np.float32)
    radius = min(data.BLUR_RADIUS, size - 1)
    blurred = data.gaussian_blur(tf.constant(image), tf.constant(sigma)).numpy()
    np.testing.assert_allclose(blurred, plain_gaussian_blur(image, sigma, radius), atol=2e-3)
    assert blurred.std() < 0.5 * image.std()


def test_blur_keeps_a_flat_picture_flat():
    flat = np.full([32, 32, 3], 77.0, np.float32)
    np.testing.assert_allclose(data.gaussian_blur(tf.constant(flat), tf.constant(5.0)).numpy(), flat, rtol=1e-5)


def _crops(blur_fraction: float, count: int = 64) -> np.ndarray:
    image = tf.constant(np.random.default_rng(0).uniform(0, 255, [48, 60, 3]).astype(np.float32))
    seed = tf.constant([3, 4], tf.int32)
    return np.stack([data.random_crop(image, 32, seed + i, blur_fraction).numpy() for i in range(count)])


def _is_blurred(crops: np.ndarray) -> np.ndarray:
    """Whether each crop's neighbouring pixels are close: white noise's differ by ~100, blurred ones by <20."""
    return np.abs(np.diff(crops, axis=2)).mean(axis=(1, 2, 3)) < 20.0


def test_a_share_of_crops_is_blurred_and_the_crops_are_those_without_blur():
    sharp, some, every = _crops(0.0), _crops(0.5), _crops(1.0)
    assert not _is_blurred(sharp).any() and _is_blurred(every).all()
    blurred = _is_blurred(some)
    assert 0.25 < blurred.mean() < 0.75
    np.testing.assert_array_equal(some[~blurred], sharp[~blurred])
    for crop, reference in zip(some[blurred], sharp[blurred]):
        assert abs(crop.mean() - reference.mean()) < 5.0


def test_cli_refuses_a_blur_fraction_outside_zero_to_one(tmp_path, capsys):
    code = train_run(["--preset", "tiny", "--blur-fraction", "1.5", "--style", str(tmp_path / "s.png"),
                      "--data", str(tmp_path), "--out", str(tmp_path / "run")])
    assert code == 2 and "--blur-fraction must be between 0 and 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
