"""`impasto prepare-data` on a real Beam DirectRunner, and `impasto train` on its TFRecord shards."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from impasto.model import image_io
from impasto.training import records

from test_batch import BAD, GOOD, IN_PROCESS, _make_folder

SIZE = 24


@pytest.fixture(scope="module")
def shards(tmp_path_factory, data_dir):
    """Three shards of the batch tests' folder (4 good photos, 4 bad files), short sides shrunk to 24."""
    from impasto.training.prepare_cli import run

    root = tmp_path_factory.mktemp("prepare")
    inputs = _make_folder(root / "in", data_dir, long_side=48)
    prefix = root / "shards" / "photos"
    assert run(["--input", str(inputs), "--output", str(prefix), "--shards", "3", "--size", str(SIZE),
                "--", *IN_PROCESS]) == 0
    return inputs, prefix


def _all_records(files):
    context = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0)
    return list(records.worker_records(files, context, seed=0, repeat=False).as_numpy_iterator())


def test_shards_hold_every_good_photo_decoded_and_shrunk(shards):
    inputs, prefix = shards
    files = records.shard_files(f"{prefix}-*.tfrecord")
    assert [Path(f).name for f in files] == [f"photos-0000{i}-of-00003.tfrecord" for i in range(3)]
    found = {Path(r["source"].decode()).relative_to(inputs).as_posix(): r["image"] for r in _all_records(files)}
    assert sorted(found) == sorted(GOOD)
    for relative, image in found.items():
        original = image_io.load_image(inputs / relative)
        assert min(image.shape[:2]) == SIZE
        assert image.shape[1] / image.shape[0] == pytest.approx(original.shape[1] / original.shape[0], rel=0.1)
        shrunk = image_io.resize_image(original, *image.shape[:2])
        assert np.abs(image - np.rint(shrunk)).max() <= 1  # PNG keeps the decoded, resized pixels.


def test_bad_photos_are_dead_lettered_with_their_reason(shards):
    inputs, prefix = shards
    lines = Path(f"{prefix}-dead_letter.jsonl").read_text().splitlines()
    dead = {Path(r["input"]).relative_to(inputs).as_posix(): r["reason"] for r in map(json.loads, lines)}
    assert sorted(dead) == sorted(BAD)
    assert all(reason in dead[relative] for relative, (_, reason) in BAD.items())


def test_two_workers_each_read_their_own_shards(shards):
    inputs, prefix = shards
    files = records.shard_files(f"{prefix}-*.tfrecord")
    seen = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker)
        seen.append({r["source"].decode() for r in records.worker_records(files, context, 0, repeat=False)
                     .as_numpy_iterator()})
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert {Path(s).relative_to(inputs).as_posix() for s in seen[0] | seen[1]} == set(GOOD)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0, num_replicas_in_sync=2)
    batch = next(iter(records.training_dataset(files, context, size=16, global_batch_size=4, seed=0)))
    assert batch.shape == (2, 16, 16, 3)  # Each worker's replica gets its share of the global batch.
    shaped = records.training_dataset(files, context, size=16, global_batch_size=4, seed=0, aspects=(1.0, 16 / 9))
    assert [tuple(b.shape) for b in shaped.take(3)] == [(2, 16, 16, 3), (2, 12, 20, 3), (2, 16, 16, 3)]
    with pytest.raises(Exception, match="one shard per worker"):
        records.worker_records(files, tf.distribute.InputContext(num_input_pipelines=4, input_pipeline_id=0), 0)


@pytest.mark.slow
def test_train_runs_on_the_shards(shards, tmp_path, data_dir, tiny_vgg_file):
    from impasto.training.cli import run

    _, prefix = shards
    argv = ["--style", str(data_dir / "great_wave.png"), "--data", f"{prefix}-*.tfrecord",
            "--out", str(tmp_path / "run"), "--preset", "tiny", "--steps", "2", "--image-size", "16",
            "--vgg-weights", str(tiny_vgg_file), "--no-progress"]
    assert run(argv) == 0
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-2")
    assert run([*argv[:3], str(tmp_path / "none-*.tfrecord"), *argv[4:]]) == 2


@pytest.mark.slow
def test_train_on_the_shards_with_two_workers(shards, tmp_path, data_dir, tiny_vgg_file):
    """MultiWorkerMirroredStrategy over TF_CONFIG on loopback: both workers train on their own shards, in step."""
    import os
    import subprocess
    import sys

    from test_training import _free_ports

    _, prefix = shards
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        command = [sys.executable, "-m", "impasto.cli", "train", "--style", str(data_dir / "great_wave.png"),
                   "--data", f"{prefix}-*.tfrecord", "--out", str(tmp_path / "run"), "--preset", "tiny",
                   "--steps", "2", "--image-size", "16", "--vgg-weights", str(tiny_vgg_file), "--no-progress"]
        processes.append(subprocess.Popen(command, env=dict(os.environ, TF_CONFIG=tf_config), stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    summaries = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    assert [s["steps"] for s in summaries] == [2, 2]
    assert summaries[0]["loss"] == pytest.approx(summaries[1]["loss"], rel=1e-5)  # One model, gradients all-reduced.
