"""Training survives faults: kill -9 mid-run then resume, corrupt or half-written checkpoints, unreadable photos."""

import json
import logging
import shutil
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from impasto.model.errors import InvalidInputError
from impasto.model.feedforward.bundles import BUNDLE_FORMAT
from impasto.testing import IMPASTO_COMMAND
from impasto.training import cli, data
from impasto.training.config import TrainConfig
from impasto.training.history import span
from impasto.training.trainer import Trainer

from conftest import as_foreground_process, load_test_image


def _train_command(data_dir: Path, photo_dir: Path, run_dir: Path, vgg_file: Path, steps: int,
                   checkpoint_every: int) -> list[str]:
    """`impasto train` of the tiny preset on the great wave, without a progress bar."""
    return [*IMPASTO_COMMAND, "train", "--style", str(data_dir / "great_wave.png"), "--data", str(photo_dir),
            "--out", str(run_dir), "--preset", "tiny", "--steps", str(steps), "--checkpoint-every",
            str(checkpoint_every), "--vgg-weights", str(vgg_file), "--no-progress"]


@pytest.mark.subprocess
def test_kill_9_then_the_same_command_resumes_and_finishes(tmp_path, photo_dir, data_dir, tiny_vgg_file):
    run_dir = tmp_path / "run"
    command = _train_command(data_dir, photo_dir, run_dir, tiny_vgg_file, steps=16, checkpoint_every=1)
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and first.poll() is None:
        latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
        if latest and int(latest.rsplit("-", 1)[1]) >= 3:
            break
        time.sleep(0.05)
    assert first.poll() is None, "training ended before it could be killed"
    first.send_signal(signal.SIGKILL)  # Likely while it writes a checkpoint: one is written every step.
    first.wait()
    killed_at = int(tf.train.latest_checkpoint(str(run_dir / "checkpoints")).rsplit("-", 1)[1])
    assert 3 <= killed_at < 16

    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 16
    assert tf.train.latest_checkpoint(str(run_dir / "checkpoints")).endswith("ckpt-16")
    bundle = json.loads((run_dir / "bundle.json").read_text())
    assert bundle["steps"] == 16 and bundle["train_config"]["steps"] == 16
    # The killed process recorded its segment as far as its last checkpoint; the second one goes on from there.
    (first_step, killed_step), (resumed_step, last_step) = [span(entry) for entry in bundle["segments"]]
    assert first_step == 0 and killed_step == resumed_step and last_step == 16
    assert all(entry["wall_seconds"] > 0 for entry in bundle["segments"])


# A checkpoint cut short (killed mid-write, a full disk) never costs the previous one.


def _trainer(run_dir: Path, weights) -> Trainer:
    config = replace(TrainConfig.tiny(), checkpoint_every=2, validation_photos=0)
    return Trainer(config, load_test_image("great_wave.png"), run_dir, vgg_weights=weights)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_vgg_weights):
    """A run directory with checkpoints at steps 2 and 4 (Adam moments filled with the step), copied for each test."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    trainer = _trainer(run_dir, tiny_vgg_weights)
    for step in (2, 4):
        trainer.step.assign(step)
        trainer.optimizer.iterations.assign(step)
        for moment in trainer.optimizer.first_moments:
            moment.assign(tf.fill(moment.shape, float(step)))
        trainer.manager.save(checkpoint_number=step)

    def fresh_copy(tmp_path: Path) -> Path:
        shutil.copytree(run_dir, tmp_path / "run")
        return tmp_path / "run"

    return fresh_copy


@pytest.mark.subprocess
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_exits_130(tmp_path, photo_dir, data_dir, tiny_vgg_file,
                                                            signal_number):
    run_dir = tmp_path / "run"
    command = _train_command(data_dir, photo_dir, run_dir, tiny_vgg_file, steps=100_000, checkpoint_every=1000)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=as_foreground_process)
    deadline = time.monotonic() + 240
    while not (run_dir / "logs").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2)  # Some steps, none of them a checkpoint step.
    process.send_signal(signal_number)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "interrupted: checkpoint saved in" in stderr and "Traceback" not in stderr
    saved = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    assert saved is not None and stderr.strip().endswith(saved) and stdout == ""


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_and_says_so(trained_run, tmp_path, tiny_vgg_weights,
                                                                              caplog):
    run_dir = trained_run(tmp_path)
    newest = run_dir / "checkpoints" / "ckpt-4.data-00000-of-00001"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    trainer = _trainer(run_dir, tiny_vgg_weights)
    with caplog.at_level(logging.WARNING, logger="impasto.training"):
        assert trainer.restore() == 2
    assert "ckpt-4 cannot be restored" in caplog.text and "resuming from" in caplog.text
    assert int(trainer.optimizer.iterations.numpy()) == 2
    assert all(np.all(moment.numpy() == 2.0) for moment in trainer.optimizer.first_moments)


def test_a_checkpoint_with_corrupt_bytes_falls_back_too(trained_run, tmp_path, tiny_vgg_weights):
    run_dir = trained_run(tmp_path)
    newest = run_dir / "checkpoints" / "ckpt-4.data-00000-of-00001"
    newest.write_bytes(bytes(byte ^ 0xFF for byte in newest.read_bytes()))
    assert _trainer(run_dir, tiny_vgg_weights).restore() == 2


def test_a_half_written_newer_checkpoint_is_ignored(trained_run, tmp_path, tiny_vgg_weights):
    run_dir = trained_run(tmp_path)
    folder = run_dir / "checkpoints"
    # What a kill during the save of step 6 leaves: its files, partly written, and the old state file.
    (folder / "ckpt-6.index").write_bytes((folder / "ckpt-4.index").read_bytes()[:40])
    (folder / "ckpt-6_temp").mkdir()
    (folder / "ckpt-6_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 100)
    assert _trainer(run_dir, tiny_vgg_weights).restore() == 4


def test_no_restorable_checkpoint_is_an_error_not_a_fresh_start(trained_run, tmp_path, tiny_vgg_weights):
    run_dir = trained_run(tmp_path)
    for index in (run_dir / "checkpoints").glob("*.index"):
        index.write_bytes(b"not an sstable")
    with pytest.raises(InvalidInputError, match="none of the checkpoints"):
        _trainer(run_dir, tiny_vgg_weights).restore()


def test_resuming_with_another_width_exits_2_with_a_message_and_keeps_the_run(trained_run, tmp_path, data_dir,
                                                                            photo_dir, tiny_vgg_file, capsys):
    run_dir = trained_run(tmp_path)
    (run_dir / "model.json").write_text(json.dumps({"format": BUNDLE_FORMAT, "width": 0.125, "style": "great_wave"}))
    before = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    code = cli.run(["--style", str(data_dir / "great_wave.png"), "--data", str(photo_dir), "--out", str(run_dir),
                    "--preset", "tiny", "--width", "0.25", "--vgg-weights", str(tiny_vgg_file), "--no-progress"])
    assert code == 2
    assert "holds a width-0.125 network; this run asks for width 0.25" in capsys.readouterr().err
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == before


def test_resuming_with_another_block_count_exits_2_with_a_message_and_keeps_the_run(trained_run, tmp_path, data_dir,
                                                                                  photo_dir, tiny_vgg_file, capsys):
    run_dir = trained_run(tmp_path)  # Its model.json, as runs wrote it before the count was recorded: 5 blocks.
    (run_dir / "model.json").write_text(json.dumps({"format": BUNDLE_FORMAT, "width": 0.125, "style": "great_wave"}))
    before = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    code = cli.run(["--style", str(data_dir / "great_wave.png"), "--data", str(photo_dir), "--out", str(run_dir),
                    "--preset", "tiny", "--residual-blocks", "7", "--vgg-weights", str(tiny_vgg_file),
                    "--no-progress"])
    assert code == 2
    assert "holds a network of 5 residual blocks; this run asks for 7" in capsys.readouterr().err
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == before


def test_resuming_with_another_noise_channel_count_exits_2_with_a_message_and_keeps_the_run(
        trained_run, tmp_path, data_dir, photo_dir, tiny_vgg_file, capsys):
    run_dir = trained_run(tmp_path)  # Its model.json, as runs wrote it before noise was recorded: none read.
    (run_dir / "model.json").write_text(json.dumps({"format": BUNDLE_FORMAT, "width": 0.125, "style": "great_wave"}))
    before = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    argv = ["--style", str(data_dir / "great_wave.png"), "--data", str(photo_dir), "--out", str(run_dir),
            "--preset", "tiny", "--vgg-weights", str(tiny_vgg_file), "--no-progress"]
    assert cli.run([*argv, "--noise-channels", "1"]) == 2
    assert "reads 0 noise channels; this run asks for 1" in capsys.readouterr().err
    assert cli.run([*argv, "--noise-channels", "-1"]) == 2
    assert "--noise-channels must be at least 0" in capsys.readouterr().err
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == before


def test_a_run_directory_of_another_format_is_refused(trained_run, tmp_path, tiny_vgg_weights):
    run_dir = trained_run(tmp_path)
    (run_dir / "model.json").write_text(json.dumps({"format": "impasto-transformer/2", "width": 0.125}))
    with pytest.raises(InvalidInputError, match="model format 'impasto-transformer/2'"):
        _trainer(run_dir, tiny_vgg_weights).restore()


def test_a_folder_where_no_photo_decodes_fails_at_once_instead_of_searching_forever(tmp_path, data_dir,
                                                                                     tiny_vgg_weights):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("edge_empty.jpg", "edge_truncated.jpg", "edge_random_bytes.jpg", "edge_bomb_30000.png"):
        shutil.copy(data_dir / name, photos / name)
    started = time.monotonic()
    with pytest.raises(InvalidInputError, match="none of the 4 photos can be decoded"):
        _trainer(tmp_path / "run", tiny_vgg_weights).train(data.list_photos(photos), show_progress=False)
    assert time.monotonic() - started < 60
