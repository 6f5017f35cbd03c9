"""Shapes of training crops (`TrainConfig.crop_aspects`): batches of several shapes in turn."""

import json
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from impasto.training import data
from impasto.training.cli import run as train_run
from impasto.training.config import TrainConfig
from impasto.training.trainer import Trainer

from conftest import load_test_image


@pytest.mark.parametrize("size, aspect, expected", [(192, 1.0, (192, 192)), (192, 16 / 9, (144, 256)),
                                                    (192, 9 / 16, (256, 144)), (192, 4 / 3, (168, 220)),
                                                    (30, 1.0, (30, 30)), (8, 100.0, (4, 80))])
def test_crop_shape_keeps_the_squares_pixels_in_multiples_of_four(size, aspect, expected):
    height, width = data.crop_shape(size, aspect)
    assert (height, width) == expected
    if aspect != 1.0 and size > 8:
        assert abs(height * width / size**2 - 1.0) < 0.02


def _landscape(height: int, width: int) -> tf.Tensor:
    """A picture whose columns run from 0 to 255, left to right."""
    ramp = np.repeat(np.linspace(0.0, 255.0, width, dtype=np.float32)[None, :], height, axis=0)
    return tf.constant(np.stack([ramp] * 3, axis=-1))


def test_a_wide_crop_of_a_wide_photo_at_scale_one_shows_its_whole_width():
    crop = data.random_crop(_landscape(90, 160), (36, 64), tf.constant([1, 2], tf.int32), max_scale=1.0).numpy()
    assert crop.shape == (36, 64, 3)
    assert crop[:, :, 0].max() - crop[:, :, 0].min() > 0.95 * 255.0
    # A square crop of the same photo shows only its middle part across.
    square = data.random_crop(_landscape(90, 160), 48, tf.constant([1, 2], tf.int32), max_scale=1.0).numpy()
    assert square[:, :, 0].max() - square[:, :, 0].min() < 0.6 * 255.0


@pytest.mark.parametrize("blur_fraction", [0.0, 1.0])
def test_batches_take_the_shapes_in_turn(photo_dir, blur_fraction):
    photos = data.list_photos(photo_dir)
    batches = data.training_dataset(photos, size=24, batch_size=2, seed=0, skipped=data.SkippedFiles(),
                                    blur_fraction=blur_fraction, aspects=(1.0, 16 / 9, 9 / 16))
    shapes = [tuple(batch.shape) for batch in batches.take(6)]
    assert shapes == [(2, 24, 24, 3), (2, 20, 32, 3), (2, 32, 20, 3)] * 2


def test_one_aspect_keeps_the_static_shape(photo_dir):
    dataset = data.training_dataset(data.list_photos(photo_dir), size=24, batch_size=2, seed=0,
                                    skipped=data.SkippedFiles(), aspects=(16 / 9,))
    assert dataset.element_spec.shape.as_list() == [2, 20, 32, 3]


@pytest.mark.slow
def test_training_on_two_shapes_runs_and_records_them(tmp_path, photo_dir, tiny_vgg_weights):
    config = replace(TrainConfig.tiny(), crop_aspects=(1.0, 16 / 9), noise_channels=1, blur_fraction=0.5)
    photos, validation = data.split_validation(data.list_photos(photo_dir), 2)
    trainer = Trainer(config, load_test_image("starry_night.png"), tmp_path / "run", vgg_weights=tiny_vgg_weights)
    result = trainer.train(photos, validation, show_progress=False)
    assert result.steps == 4 and np.isfinite(result.losses["total"])
    assert trainer._train_step.experimental_get_tracing_count() == 2  # One graph per crop shape.
    recipe = json.loads((tmp_path / "run" / "bundle.json").read_text())["segments"][-1]["recipe"]
    assert recipe["crop_aspects"] == [1.0, 16 / 9]


@pytest.mark.parametrize("flag, problem", [("1,16:0", "'16:0' is not an aspect"), ("1,-2", "must be positive"),
                                           ("wide", "'wide' is not an aspect"), ("16:", "'16:' is not an aspect")])
def test_cli_refuses_a_bad_aspect(tmp_path, capsys, flag, problem):
    with pytest.raises(SystemExit) as exit_info:
        train_run(["--preset", "tiny", "--crop-aspects", flag, "--style", str(tmp_path / "s.png"),
                   "--data", str(tmp_path), "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2 and problem in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
