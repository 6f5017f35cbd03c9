"""The training recipe: learning-rate schedules, and continuing a model from a bundle with its history."""

import json
import math
import shutil
from dataclasses import replace

import numpy as np
import pytest

from impasto.model.errors import InvalidInputError
from impasto.model.feedforward.bundles import load_network
from impasto.model.feedforward.deepen import NEW_BLOCK_AMPLITUDE
from impasto.training import data
from impasto.training.config import TrainConfig, preset
from impasto.training.schedule import learning_rate_at
from impasto.training.trainer import Trainer

from conftest import load_test_image


def test_constant_schedule_warms_up_linearly_then_holds_the_peak():
    config = replace(TrainConfig.tiny(), steps=100, learning_rate=2e-3, warmup_steps=4)
    assert [learning_rate_at(step, config) for step in range(4)] == pytest.approx([5e-4, 1e-3, 1.5e-3, 2e-3])
    assert learning_rate_at(4, config) == learning_rate_at(99, config) == 2e-3


def test_cosine_schedule_falls_from_the_peak_to_its_floor_at_the_last_step():
    config = replace(TrainConfig.tiny(), steps=110, learning_rate=1e-3, warmup_steps=10, lr_schedule="cosine",
                     final_lr_fraction=0.1)
    rates = [learning_rate_at(step, config) for step in range(110)]
    assert rates[10] == pytest.approx(1e-3)
    assert rates[60] == pytest.approx(1e-4 + 0.5 * 9e-4)
    assert learning_rate_at(110, config) == pytest.approx(1e-4)
    assert all(later <= earlier for earlier, later in zip(rates[10:], rates[11:]))
    assert max(rates) == pytest.approx(1e-3) and all(math.isfinite(rate) for rate in rates)


@pytest.mark.slow
def test_training_sets_the_scheduled_rate_before_each_step(tmp_path, photo_dir, tiny_vgg_weights):
    config = replace(TrainConfig.tiny(), steps=3, lr_schedule="cosine", learning_rate=1e-3)
    trainer = Trainer(config, load_test_image("starry_night.png"), tmp_path / "run", vgg_weights=tiny_vgg_weights)
    trainer.train(data.list_photos(photo_dir), show_progress=False)
    assert float(trainer.optimizer.learning_rate.numpy()) == pytest.approx(learning_rate_at(2, config))


def _train_tiny_bundle(run_dir, photo_dir, tiny_vgg_weights, steps=2) -> Trainer:
    trainer = Trainer(replace(TrainConfig.tiny(), steps=steps), load_test_image("starry_night.png"), run_dir,
                      vgg_weights=tiny_vgg_weights, style_name="starry")
    trainer.train(data.list_photos(photo_dir), show_progress=False)
    return trainer


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, photo_dir, tiny_vgg_weights):
    """A tiny network trained for 2 steps; its run directory holds bundle.npz."""
    run_dir = tmp_path_factory.mktemp("first")
    return _train_tiny_bundle(run_dir, photo_dir, tiny_vgg_weights), run_dir / "bundle.npz"


@pytest.mark.slow
def test_a_run_starts_from_a_bundle_and_its_bundle_carries_the_whole_history(tmp_path, photo_dir, tiny_vgg_weights,
                                                                           first_run):
    first, bundle = first_run
    config = replace(TrainConfig.tiny(), steps=3, lr_schedule="cosine")
    second = Trainer(config, load_test_image("starry_night.png"), tmp_path / "second", vgg_weights=tiny_vgg_weights,
                     style_name="starry", init_from=bundle)
    second.restore()
    second.train(data.list_photos(photo_dir), show_progress=False)
    history = json.loads((tmp_path / "second" / "bundle.json").read_text())
    assert history["steps"] == 5 and history["steps_before"] == 2
    assert [segment["steps"] for segment in history["segments"]] == ["0-2", "2-5"]
    assert history["segments"][1]["recipe"]["lr_schedule"] == "cosine"
    assert history["total_wall_seconds"] >= history["wall_seconds"] > 0
    # The second run started from the first one's weights (float16-rounded), not from random ones.
    started = Trainer(config, load_test_image("starry_night.png"), tmp_path / "third", vgg_weights=tiny_vgg_weights,
                      init_from=bundle)
    random_start = started.network.weights_dict()
    assert started._initialize_from_bundle()[0] == 2
    bundled, _ = load_network(bundle)
    for name, value in bundled.weights_dict().items():
        np.testing.assert_array_equal(started.network.weights_dict()[name], value)
        np.testing.assert_allclose(value, first.network.weights_dict()[name], rtol=1e-2, atol=1e-3)
    assert any(not np.array_equal(random_start[name], value) for name, value in bundled.weights_dict().items())


@pytest.mark.slow
@pytest.mark.parametrize("width", [0.0625, 0.1875])
def test_starting_from_a_bundle_not_a_whole_fraction_of_the_width_is_refused(tmp_path, photo_dir, tiny_vgg_weights,
                                                                              first_run, width):
    trainer = Trainer(replace(TrainConfig.tiny(), width=width), load_test_image("starry_night.png"),
                      tmp_path / "second", vgg_weights=tiny_vgg_weights, init_from=first_run[1])
    with pytest.raises(InvalidInputError, match=f"width-0.125 network; this run asks for {width}"):
        trainer.train(data.list_photos(photo_dir), show_progress=False)
    checkpoints = tmp_path / "second" / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())


def _grown_from_bundle(config: TrainConfig, run_dir, bundle, vgg_weights):
    """A run of `config` started from `bundle` (wider or deeper): the trainer, the bundle's steps and history,
    and (the grown network's output, the bundle's) on a photo."""
    trainer = Trainer(config, load_test_image("starry_night.png"), run_dir, vgg_weights=vgg_weights,
                      style_name="starry", init_from=bundle)
    steps, history = trainer._initialize_from_bundle()
    images = np.stack([load_test_image("starry_night.png")[:40, :48]]).astype(np.float32)
    outputs = trainer.network(images).numpy(), load_network(bundle)[0](images).numpy()
    return trainer, steps, history, outputs


@pytest.mark.slow
def test_a_wider_run_starts_from_a_narrow_bundle_computing_its_function_then_its_copies_part(
        tmp_path, photo_dir, tiny_vgg_weights, first_run):
    trainer, steps, history, (grown, bundled) = _grown_from_bundle(
        replace(TrainConfig.tiny(), width=0.25, steps=2), tmp_path / "wide", first_run[1], tiny_vgg_weights)
    np.testing.assert_allclose(grown, bundled, atol=1e-2)
    assert steps == 2 and history[-1]["widened"] == {"from_width": 0.125, "to_width": 0.25}
    trainer.train(data.list_photos(photo_dir), show_progress=False)
    kernel = trainer.network.weights_dict()["encoder/0/kernel"]  # [9, 9, 3, 8]: channel c + 4 copies c
    assert not np.allclose(kernel[..., :4], kernel[..., 4:], atol=1e-6)
    saved = json.loads((tmp_path / "wide" / "bundle.json").read_text())
    assert saved["width"] == 0.25 and [segment["steps"] for segment in saved["segments"]] == ["0-2", "2-2", "2-4"]


@pytest.mark.slow
def test_a_deeper_run_starts_from_a_shallower_bundle_computing_its_function(tmp_path, photo_dir, tiny_vgg_weights,
                                                                           first_run):
    trainer, steps, history, (grown, bundled) = _grown_from_bundle(
        replace(TrainConfig.tiny(), residual_blocks=6, steps=2), tmp_path / "deep", first_run[1], tiny_vgg_weights)
    assert 0 < np.abs(grown - bundled).mean() < 4.0  # near the bundle's function (levels of 0 to 255), not a new one
    assert steps == 2 and history[-1]["deepened"] == {"from_residual_blocks": 5, "to_residual_blocks": 6,
                                                      "new_block_amplitude": NEW_BLOCK_AMPLITUDE}
    before = trainer.network.residuals[5].first.kernel.numpy()
    trainer.train(data.list_photos(photo_dir), show_progress=False)
    assert not np.array_equal(trainer.network.residuals[5].first.kernel.numpy(), before)  # the new block learns
    saved = json.loads((tmp_path / "deep" / "bundle.json").read_text())
    assert saved["residual_blocks"] == 6 and saved["segments"][-1]["recipe"]["residual_blocks"] == 6
    assert [segment["steps"] for segment in saved["segments"]] == ["0-2", "2-2", "2-4"]
    assert load_network(tmp_path / "deep" / "bundle.npz")[0].residual_blocks == 6
    assert load_network(tmp_path / "deep")[0].residual_blocks == 6  # the run directory too
    deep_bundle = tmp_path / "deep" / "bundle.npz"
    shallower = Trainer(replace(TrainConfig.tiny(), residual_blocks=4), load_test_image("starry_night.png"),
                        tmp_path / "shallower", vgg_weights=tiny_vgg_weights, init_from=deep_bundle)
    with pytest.raises(InvalidInputError, match="has 6 residual blocks; this run asks for 4"):
        shallower.train(data.list_photos(photo_dir), show_progress=False)


@pytest.mark.slow
def test_a_run_reading_noise_starts_from_a_bundle_that_does_not_computing_its_function(tmp_path, photo_dir,
                                                                                        tiny_vgg_weights, first_run):
    trainer, steps, history, (grown, bundled) = _grown_from_bundle(
        replace(TrainConfig.tiny(), noise_channels=1, steps=2), tmp_path / "noisy", first_run[1], tiny_vgg_weights)
    np.testing.assert_allclose(grown, bundled, atol=1e-2)
    assert steps == 2 and history[-1]["noise_added"] == {"from_noise_channels": 0, "to_noise_channels": 1}
    trainer.train(data.list_photos(photo_dir), show_progress=False)
    assert np.abs(trainer.network.encoder[0].kernel.numpy()[:, :, 3:]).max() > 0  # the noise taps learn
    saved = json.loads((tmp_path / "noisy" / "bundle.json").read_text())
    assert saved["noise_channels"] == 1 and saved["segments"][-1]["recipe"]["noise_channels"] == 1
    assert load_network(tmp_path / "noisy" / "bundle.npz")[0].noise_channels == 1
    assert load_network(tmp_path / "noisy")[0].noise_channels == 1  # the run directory too
    other = Trainer(replace(TrainConfig.tiny(), steps=4), load_test_image("starry_night.png"), tmp_path / "noisy",
                    vgg_weights=tiny_vgg_weights)
    with pytest.raises(InvalidInputError, match="reads 1 noise channels; this run asks for 0"):
        other.train(data.list_photos(photo_dir), show_progress=False)


@pytest.mark.slow
def test_a_resumed_run_keeps_its_history_and_adds_a_segment(tmp_path, photo_dir, tiny_vgg_weights, first_run):
    shutil.copytree(first_run[1].parent, tmp_path / "run")
    _train_tiny_bundle(tmp_path / "run", photo_dir, tiny_vgg_weights, steps=4)
    history = json.loads((tmp_path / "run" / "bundle.json").read_text())
    assert [segment["steps"] for segment in history["segments"]] == ["0-2", "2-4"] and history["steps"] == 4
    # Running the finished run again trains nothing and leaves its history and figures as they were.
    _train_tiny_bundle(tmp_path / "run", photo_dir, tiny_vgg_weights, steps=4)
    again = json.loads((tmp_path / "run" / "bundle.json").read_text())
    assert again["segments"] == history["segments"] and again["wall_seconds"] == history["wall_seconds"] > 0


def test_the_cpu_preset_is_the_half_width_network_with_warm_up_and_cosine_decay():
    cpu, small = preset("cpu"), preset("cpu_small")
    assert (cpu.lr_schedule, cpu.warmup_steps, cpu.final_lr_fraction) == ("cosine", 20, 0.0)
    assert replace(cpu, lr_schedule=small.lr_schedule, warmup_steps=small.warmup_steps) == small
    assert learning_rate_at(cpu.steps, cpu) == 0.0 and preset("paper").lr_schedule == "constant"
