"""Scale of training crops (`TrainConfig.max_short_side_scale`): how much of a photo a crop shows."""

import numpy as np
import tensorflow as tf

from impasto.training import data
from impasto.training.cli import run as train_run
from impasto.training.config import TrainConfig


def _vertical_spans(max_scale: float, count: int = 32) -> np.ndarray:
    """The value range down each crop of a 48 x 60 picture whose rows run from 0 to 255: the share of
    the photo's height the crop shows, times 255."""
    ramp = np.repeat(np.linspace(0.0, 255.0, 48, dtype=np.float32)[:, None], 60, axis=1)
    image = tf.constant(np.stack([ramp] * 3, axis=-1))
    crops = [data.random_crop(image, 32, tf.constant([5, i], tf.int32), max_scale=max_scale).numpy()
             for i in range(count)]
    return np.array([crop[:, :, 0].max() - crop[:, :, 0].min() for crop in crops])


def test_at_scale_one_every_crop_shows_the_whole_short_side():
    spans = _vertical_spans(1.0)
    assert spans.min() > 0.9 * 255.0


def test_a_larger_scale_shows_less_of_the_photo_and_more_scales():
    default, wide = _vertical_spans(TrainConfig.max_short_side_scale), _vertical_spans(2.0)
    assert default.min() > 0.75 * 255.0  # Short side at most 1.2 crops: at least 1 / 1.2 of the height.
    assert wide.min() < 0.65 * 255.0 and wide.max() > 0.85 * 255.0
    assert wide.mean() < default.mean() - 20.0


def test_cli_refuses_a_scale_below_one(tmp_path, capsys):
    code = train_run(["--preset", "tiny", "--max-short-side-scale", "0.8", "--style", str(tmp_path / "s.png"),
                      "--data", str(tmp_path), "--out", str(tmp_path / "run")])
    assert code == 2 and "--max-short-side-scale must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
