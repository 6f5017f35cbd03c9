"""Feed-forward training: data pipeline, checkpoints and resume, divergence guard, distribution."""

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from impasto.model import image_io
from impasto.model.cpu import CpuIdentity
from impasto.model.feedforward.transformer import TransformerNet
from impasto.model.lossnet.losses import gram_matrix, style_transfer_loss
from impasto.model.lossnet.vgg import VggFeatures
from impasto.testing import IMPASTO_COMMAND
from impasto.training import cli as train_cli
from impasto.training import data
from impasto.training.config import TrainConfig, preset
from impasto.training.trainer import Trainer, TrainingDiverged

from conftest import load_test_image, run_cli_in_process


@pytest.fixture(scope="module")
def style_image():
    return load_test_image("starry_night.png")


def test_photo_listing_is_recursive_and_split_is_stable(photo_dir):
    photos = data.list_photos(photo_dir)
    assert len(photos) == 6 and any("nested" in p for p in photos)
    train, held_out = data.split_validation(photos, 2)
    assert len(held_out) == 2 and not set(train) & set(held_out)
    assert set(data.split_validation(list(reversed(photos)), 2)[1]) == set(held_out)


def test_pipeline_skips_and_counts_unreadable_files(tmp_path, photo_dir, data_dir):
    photos = data.list_photos(photo_dir)[:2]
    bad = [str(data_dir / "edge_truncated.jpg"), str(data_dir / "edge_empty.jpg")]
    skipped = data.SkippedFiles()
    batches = data.training_dataset(photos + bad, size=24, batch_size=2, seed=0, skipped=skipped)
    for batch in batches.take(6):
        assert batch.shape == (2, 24, 24, 3)
        assert float(tf.reduce_min(batch)) >= 0.0 and float(tf.reduce_max(batch)) <= 255.0
    assert skipped.count == 2 and set(skipped.reasons) == set(bad)


@pytest.mark.slow
def test_training_writes_checkpoints_logs_and_metadata(tmp_path, photo_dir, tiny_vgg_weights, style_image):
    photos, validation = data.split_validation(data.list_photos(photo_dir), 2)
    trainer = Trainer(TrainConfig.tiny(), style_image, tmp_path / "run", vgg_weights=tiny_vgg_weights)
    result = trainer.train(photos, validation, show_progress=False)
    assert result.steps == 4 and np.isfinite(result.losses["total"])
    assert {"content", "style", "tv", "total"} <= set(result.losses)
    assert result.validation_loss is not None and np.isfinite(result.validation_loss)
    metadata = json.loads((tmp_path / "run" / "model.json").read_text())
    assert metadata["width"] == 0.125 and metadata["train_config"]["steps"] == 4
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-4")
    assert list((tmp_path / "run" / "logs").glob("events.out.tfevents.*"))
    assert json.loads((tmp_path / "run" / "bundle.json").read_text())["steps"] == 4


@pytest.mark.slow
def test_resume_continues_with_the_saved_step_and_optimizer_state(tmp_path, photo_dir, tiny_vgg_weights, style_image):
    photos = data.list_photos(photo_dir)
    first = Trainer(replace(TrainConfig.tiny(), steps=2), style_image, tmp_path / "run", vgg_weights=tiny_vgg_weights)
    first.train(photos, show_progress=False)
    saved_moment = first.optimizer.first_moments[0].numpy()
    saved_kernel = first.network.trainable_variables[0].numpy()
    second = Trainer(TrainConfig.tiny(), style_image, tmp_path / "run", vgg_weights=tiny_vgg_weights)
    assert second.restore() == 2
    assert int(second.optimizer.iterations.numpy()) == 2
    np.testing.assert_array_equal(second.optimizer.first_moments[0].numpy(), saved_moment)
    np.testing.assert_array_equal(second.network.trainable_variables[0].numpy(), saved_kernel)
    assert second.train(photos, show_progress=False).steps == 4


@pytest.mark.slow
def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, photo_dir, tiny_vgg_weights, style_image):
    photos = data.list_photos(photo_dir)
    Trainer(replace(TrainConfig.tiny(), steps=2), style_image, tmp_path / "run", vgg_weights=tiny_vgg_weights).train(
        photos, show_progress=False)
    broken = replace(TrainConfig.tiny(), loss=replace(TrainConfig.tiny().loss, style_weight=float("nan")))
    trainer = Trainer(broken, style_image, tmp_path / "run", vgg_weights=tiny_vgg_weights)
    with pytest.raises(TrainingDiverged, match="ckpt-2"):
        trainer.train(photos, show_progress=False)
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-2")
    reader = tf.train.load_checkpoint(str(tmp_path / "run" / "checkpoints"))
    kernels = [reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
               if "kernel" in name and "OPTIMIZER" not in name]
    assert kernels and all(np.all(np.isfinite(k)) for k in kernels)


def test_the_mixed_precision_loss_follows_the_float32_loss_of_the_same_network_and_batch(tiny_vgg_weights,
                                                                                        style_image):
    photos = np.stack([image_io.resize_image(load_test_image(name), 48, 48) for name in ("chelsea.png", "coffee.png")])
    loss_config = TrainConfig.tiny().loss
    weights = TransformerNet(width=0.125, seed=3).weights_dict()
    totals, terms = {}, {}
    for dtype in (tf.float32, tf.bfloat16):
        network = TransformerNet(width=0.125, compute_dtype=dtype)
        network.load_weights_dict(weights)
        vgg = VggFeatures(tiny_vgg_weights, dtype=dtype)
        style_grams = {layer: gram_matrix(features) for layer, features in
                       vgg(tf.constant(style_image[None]), [name for name, _ in loss_config.style_layers]).items()}
        stylized = network(tf.constant(photos))
        assert stylized.dtype == tf.float32 and all(v.dtype == tf.float32 for v in network.trainable_variables)
        totals[dtype], terms[dtype] = style_transfer_loss(
            stylized, vgg(stylized, loss_config.all_layers),
            vgg(tf.constant(photos), [name for name, _ in loss_config.content_layers]), style_grams, loss_config)
    assert float(totals[tf.bfloat16]) != float(totals[tf.float32])  # bfloat16 did run...
    for name in ("content", "style", "tv", "total"):  # ...and every term follows float32's.
        assert float(terms[tf.bfloat16].get(name, totals[tf.bfloat16])) == pytest.approx(
            float(terms[tf.float32].get(name, totals[tf.float32])), rel=0.03), name


@pytest.mark.slow
def test_a_mixed_precision_run_trains_and_records_it_in_its_history(tmp_path, photo_dir, tiny_vgg_weights,
                                                                     style_image):
    config = replace(TrainConfig.tiny(), steps=2, mixed_precision=True)
    trainer = Trainer(config, style_image, tmp_path / "run", vgg_weights=tiny_vgg_weights)
    result = trainer.train(data.list_photos(photo_dir), show_progress=False)
    assert result.steps == 2 and np.isfinite(result.losses["total"])
    assert trainer.vgg.compute_dtype == tf.bfloat16
    assert all(variable.dtype == tf.float32 for variable in trainer.network.trainable_variables)
    segment = json.loads((tmp_path / "run" / "bundle.json").read_text())["segments"][-1]
    assert segment["recipe"]["mixed_precision"] is True


def test_a_run_whose_precision_does_not_suit_its_cpu_is_told_so():
    avx512_bf16 = CpuIdentity("AMD EPYC", ("AVX2", "FMA", "AVX-512F", "AVX-512 BF16"), 2)
    amx = CpuIdentity("Intel Xeon", ("AVX2", "AVX-512F", "AMX", "AMX BF16"), 2)
    avx2 = CpuIdentity("AMD EPYC", ("AVX2", "FMA"), 2)
    float32, bfloat16 = TrainConfig.tiny(), replace(TrainConfig.tiny(), mixed_precision=True)
    assert "AVX-512 BF16" in train_cli.mixed_precision_hint(float32, avx512_bf16, has_gpu=False)
    assert "AMX BF16" in train_cli.mixed_precision_hint(float32, amx, has_gpu=False)
    assert train_cli.mixed_precision_hint(float32, avx2, has_gpu=False) is None
    assert train_cli.mixed_precision_hint(bfloat16, avx512_bf16, has_gpu=False) is None
    assert train_cli.mixed_precision_hint(float32, avx512_bf16, has_gpu=True) is None
    slower = train_cli.mixed_precision_hint(bfloat16, avx2, has_gpu=False)
    assert "no bfloat16 units" in slower and "slower" in slower
    assert train_cli.mixed_precision_hint(bfloat16, avx2, has_gpu=True) is None


def test_presets_are_named_and_overridable():
    assert preset("paper").steps == 40000 and preset("paper").width == 1.0
    assert preset("cpu_small", steps=7).steps == 7
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


_DISTRIBUTED_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import tensorflow as tf
    if os.environ.get("LOGICAL_CPUS"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from impasto.model.image_io import load_image
    from impasto.model.lossnet.weights import load_vgg_weights
    from impasto.training import data
    from impasto.training.config import TrainConfig
    from impasto.training.trainer import Trainer, choose_strategy
    photos_dir, style_path, weights_path, run_dir = sys.argv[1:5]
    if os.environ.get("LOGICAL_CPUS"):
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    else:
        strategy = choose_strategy()
    trainer = Trainer(TrainConfig.tiny(), load_image(style_path), run_dir, vgg_weights=load_vgg_weights(weights_path),
                      strategy=strategy)
    result = trainer.train(data.list_photos(photos_dir), show_progress=False)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "steps": result.steps,
                      "loss": result.losses["total"],
                      "multi_worker": isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)}))
""")


def _run_distributed(args, env_extra, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **env_extra)
    return subprocess.Popen([sys.executable, "-c", _DISTRIBUTED_SCRIPT, *map(str, args)], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.subprocess
def test_mirrored_strategy_over_two_logical_cpus(tmp_path, photo_dir, data_dir, tiny_vgg_file):
    process = _run_distributed([photo_dir, data_dir / "starry_night.png", tiny_vgg_file, tmp_path / "run"],
                               {"LOGICAL_CPUS": "1"}, tmp_path)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and result["steps"] == 4 and np.isfinite(result["loss"])


def _free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
@pytest.mark.subprocess
def test_multi_worker_mirrored_strategy_on_loopback(tmp_path, photo_dir, data_dir, tiny_vgg_file):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(_run_distributed([photo_dir, data_dir / "starry_night.png", tiny_vgg_file, tmp_path / "run"],
                                          {"TF_CONFIG": tf_config}, tmp_path))
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    results = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    assert all(r["multi_worker"] and r["replicas"] == 2 for r in results), results
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], rel=1e-5)
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-4")


@pytest.mark.subprocess
def test_train_cli_runs_and_reports_json(tmp_path, photo_dir, data_dir, tiny_vgg_file):
    command = [*IMPASTO_COMMAND, "train", "--style", str(data_dir / "great_wave.png"), "--data", str(photo_dir),
               "--out", str(tmp_path / "run"), "--preset", "tiny", "--steps", "2", "--vgg-weights", str(tiny_vgg_file),
               "--no-progress"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    summary = json.loads(finished.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["skipped_files"] == 0


@pytest.mark.subprocess
def test_train_cli_max_pixels_skips_and_counts_a_photo_above_the_limit(tmp_path, data_dir, tiny_vgg_file, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea.png", "coffee.png"):  # 128 x 85 = 10,880 pixels each.
        (photos / name).write_bytes((data_dir / name).read_bytes())
    big = image_io.resize_image(load_test_image("rocket.png"), 170, 256)  # 43,520 pixels.
    (photos / "big.png").write_bytes(image_io.encode_image(big))
    command = [*IMPASTO_COMMAND, "train", "--style", str(data_dir / "great_wave.png"), "--data", str(photos),
               "--out", str(tmp_path / "run"), "--preset", "tiny", "--steps", "2", "--validation-photos", "0",
               "--vgg-weights", str(tiny_vgg_file), "--no-progress"]
    finished = subprocess.run([*command, "--max-pixels", "20000"], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    summary = json.loads(finished.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["skipped_files"] == 1
    assert json.loads((tmp_path / "run" / "model.json").read_text())["train_config"]["max_pixels"] == 20000
    code, stderr = run_cli_in_process(capsys, *command[len(IMPASTO_COMMAND):], "--max-pixels", "0")
    assert code == 2 and "--max-pixels must be at least 1" in stderr


def test_train_cli_refuses_a_folder_without_photos(tmp_path, data_dir, capsys):
    (tmp_path / "empty").mkdir()
    code, stderr = run_cli_in_process(capsys, "train", "--style", data_dir / "great_wave.png",
                                      "--data", tmp_path / "empty", "--out", tmp_path / "run")
    assert code == 2 and "no .jpg" in stderr
    assert not (tmp_path / "run").exists()
    assert "Traceback" not in stderr
