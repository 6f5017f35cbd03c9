"""`impasto export`: versions, server config files, refusals that write nothing, and a kill mid-export."""

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from impasto.export import cli, keys, tfserving_config, tfserving_protos
from impasto.export.exporter import PAUSE_ENV, next_version, version_numbers
from impasto.export.options import DEFAULT_WARMUP_SIZES, parse_sizes
from impasto.export.tfserving_config import EXPORT_BATCHING, BatchingConfig
from impasto.export.warmup import read_warmup_requests, warmup_path, write_warmup_file
from impasto.model.errors import InvalidInputError
from impasto.testing import IMPASTO_COMMAND


def _export(bundle, models, *extra) -> int:
    return cli.run([str(bundle), "--model-base", str(models), "--max-side", "64", *extra])


def _models_config(models: Path) -> model_server_config_pb2.ModelServerConfig:
    return text_format.Parse((models / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())


def _fake_version(models: Path, name: str, version: str) -> None:
    (models / name / version).mkdir(parents=True)
    (models / name / version / "saved_model.pb").write_bytes(b"")


def test_unknown_model_exits_2_and_writes_nothing(tmp_path, capsys):
    models = tmp_path / "models"
    assert cli.run(["no-such-style", "--model-base", str(models), "--name", "x"]) == 2
    assert "no model 'no-such-style'" in capsys.readouterr().err
    assert not models.exists()


@pytest.mark.parametrize("flags,message", [
    (["--name", "tiny", "--max-side", "8"], "max side"),
    (["--name", "../evil"], "model name"),
    (["--name", "tiny", "--version", "0"], "--version 0"),
    (["--name", "tiny", "--allowed-batch-sizes", "4,2"], "allowed batch sizes"),
    (["--name", "tiny", "--max-batch-size", "0"], "at least 1"),
    (["--name", "tiny", "--warmup-sizes", "512"], "warmup size '512'"),
    (["--name", "tiny", "--warmup-sizes", "0x64"], "warmup size '0x64'"),
])
def test_bad_flags_exit_2_and_write_nothing(tmp_path, capsys, export_bundle, flags, message):
    models = tmp_path / "models"
    assert cli.run([str(export_bundle), "--model-base", str(models), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not models.exists()


@pytest.mark.slow
def test_exports_number_versions_and_keep_the_server_files_current(tmp_path, capsys, export_bundle):
    models = tmp_path / "models"
    assert _export(export_bundle, models, "--name", "tiny", "--max-batch-size", "16",
                   "--allowed-batch-sizes", "4,8,16") == 0
    _fake_version(models, "other", "7")  # Another model, exported earlier.
    assert _export(export_bundle, models, "--name", "tiny", "--target", "gpu", "--warmup-sizes", "64x48,32x32",
                   "--version", "5") == 0
    assert "as tiny version 5" in capsys.readouterr().out
    assert version_numbers(models / "tiny") == [1, 5]
    default = json.loads((models / "tiny" / "1" / keys.ASSETS_EXTRA / keys.METADATA_FILE).read_text())
    assert default["target"] == "cpu" and default["xla"] is False
    assert default["warmup_sizes"] == [list(size) for size in DEFAULT_WARMUP_SIZES]
    gpu = json.loads((models / "tiny" / "5" / keys.ASSETS_EXTRA / keys.METADATA_FILE).read_text())
    assert gpu["target"] == "gpu" and gpu["xla"] is True and gpu["warmup_sizes"] == [[64, 48], [32, 32]]
    assert len(read_warmup_requests(warmup_path(models / "tiny" / "5"))) == 2

    entries = _models_config(models).model_config_list.config
    assert [(e.name, e.base_path, e.model_platform) for e in entries] == [
        ("other", str((models / "other").resolve()), "tensorflow"),
        ("tiny", str((models / "tiny").resolve()), "tensorflow"),
    ]
    batching = text_format.Parse((models / "batching_parameters.txt").read_text(),
                                 tfserving_protos.message_classes()["BatchingParameters"]())
    assert batching.max_batch_size.value == 16 and list(batching.allowed_batch_sizes) == [4, 8, 16]
    assert batching.num_batch_threads.value == EXPORT_BATCHING.num_batch_threads
    monitoring = text_format.Parse((models / "monitoring.config").read_text(),
                                   tfserving_protos.message_classes()["MonitoringConfig"]())
    assert monitoring.prometheus_config.enable and monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"

    assert _export(export_bundle, models, "--name", "tiny", "--version", "5") == 2  # Taken.
    assert "--version 5" in capsys.readouterr().err


def test_batching_file_gets_defaults_once_and_is_kept_without_flags(tmp_path):
    models = tmp_path / "models"
    _fake_version(models, "tiny", "1")
    tfserving_config.write_server_files(models)
    assert "max_batch_size {\n  value: 8\n}" in (models / "batching_parameters.txt").read_text()
    tfserving_config.write_server_files(models, BatchingConfig(max_batch_size=4, num_batch_threads=1))
    tfserving_config.write_server_files(models)  # No settings: the file stays as it is.
    text = (models / "batching_parameters.txt").read_text()
    assert "max_batch_size {\n  value: 4\n}" in text and "num_batch_threads {\n  value: 1\n}" in text


def test_a_corrupt_models_config_is_refused_before_exporting(tmp_path, capsys, export_bundle):
    models = tmp_path / "models"
    models.mkdir()
    (models / "models.config").write_text("model_config_list { nonsense")
    assert _export(export_bundle, models, "--name", "tiny") == 2
    assert "models.config" in capsys.readouterr().err and not (models / "tiny").exists()


def test_models_config_lists_loadable_models_and_keeps_hand_edits(tmp_path):
    models = tmp_path / "models"
    _fake_version(models, "starry", "3")
    _fake_version(models, "wave", "1")
    (models / "empty" / "1").mkdir(parents=True)  # No saved_model.pb: not loadable.
    (models / ".hidden" / "1").mkdir(parents=True)
    previous = text_format.Parse(
        'model_config_list { config { name: "starry" base_path: "/old" version_labels { key: "stable" value: 3 } }'
        ' config { name: "gone" base_path: "/old/gone" } }', model_server_config_pb2.ModelServerConfig())
    config = tfserving_config.build_models_config(models, serving_base="/models/", previous=previous)
    entries = {e.name: e for e in config.model_config_list.config}
    assert list(entries) == ["starry", "wave"]
    assert entries["starry"].base_path == "/models/starry" and entries["starry"].version_labels["stable"] == 3
    assert entries["wave"].model_platform == "tensorflow"


def test_next_version_ignores_temporaries_and_names(tmp_path):
    model_dir = tmp_path / "tiny"
    assert next_version(model_dir) == 1
    for name in ("1", "3", ".4.abc.tmp", "notes", "10x"):
        (model_dir / name).mkdir(parents=True)
    assert version_numbers(model_dir) == [1, 3] and next_version(model_dir) == 4


def test_batching_config_validates():
    assert BatchingConfig(max_batch_size=4, allowed_batch_sizes=(1, 2, 4)).allowed_batch_sizes == (1, 2, 4)
    for bad in ({"allowed_batch_sizes": (1, 2)}, {"batch_timeout_micros": -1}, {"num_batch_threads": 0}):
        with pytest.raises(InvalidInputError):
            BatchingConfig(**bad)


@pytest.mark.subprocess
def test_killing_an_export_midway_leaves_no_version(tmp_path, export_bundle):
    models = tmp_path / "models"
    command = [*IMPASTO_COMMAND, "export", str(export_bundle), "--model-base", str(models), "--name", "tiny",
               "--max-side", "64"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, **{PAUSE_ENV: "600"}))
    watchdog = threading.Timer(240, process.kill)
    watchdog.start()
    paused_in, lines = None, []
    try:
        for line in process.stderr:
            lines.append(line)
            if line.startswith(PAUSE_ENV):
                paused_in = Path(line.rsplit(" in ", 1)[1].strip())
                break
        assert paused_in is not None, "".join(lines)[-2000:]
        assert (paused_in / "saved_model.pb").is_file()  # The export is written, not yet renamed.
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    children = list((models / "tiny").iterdir())
    assert children == [paused_in] and paused_in.name.startswith(".")
    assert not any(child.name.isdigit() for child in children)
    assert not (models / "models.config").exists()
    # The leftover temporary directory neither counts as a version nor blocks the next export.
    assert next_version(models / "tiny") == 1


def test_warmup_sizes_parse_as_height_by_width():
    assert parse_sizes("512x384, 64X64,") == ((512, 384), (64, 64))
    assert parse_sizes("") == ()
    for bad in ("512", "axb", "16385x16", "-1x4"):
        with pytest.raises(InvalidInputError, match="warmup size"):
            parse_sizes(bad)


@pytest.mark.slow
def test_no_xla_is_the_cpu_target(tmp_path, export_bundle):
    models = tmp_path / "models"
    assert _export(export_bundle, models, "--name", "tiny", "--no-xla", "--warmup-sizes", "") == 0
    metadata = json.loads((models / "tiny" / "1" / keys.ASSETS_EXTRA / keys.METADATA_FILE).read_text())
    assert metadata["target"] == "cpu" and metadata["warmup_sizes"] == []
    assert read_warmup_requests(warmup_path(models / "tiny" / "1")) == []


def test_tf_serving_messages_have_one_home_with_tf_servings_names():
    classes = tfserving_protos.message_classes()
    assert {name: cls.DESCRIPTOR.full_name for name, cls in classes.items()} == {
        name: f"tensorflow.serving.{name}" for name in ("ModelServerConfig", "BatchingParameters",
                                                        "MonitoringConfig", "SSLConfig")}
    ssl = tfserving_protos.message_classes()["SSLConfig"](server_key="k", client_verify=True)
    assert [field.name for field in ssl.DESCRIPTOR.fields] == ["server_key", "server_cert", "custom_ca",
                                                                "client_verify"]


def test_warmup_records_other_than_predict_are_refused_by_the_one_reader(tmp_path):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = warmup_path(tmp_path / "1")
    assert path.relative_to(tmp_path).parts == ("1", keys.ASSETS_EXTRA, keys.WARMUP_FILE)
    write_warmup_file(path, [(4, 6)], "tiny")
    assert [request.model_spec.signature_name for request in read_warmup_requests(path)] == [keys.SERVING_DEFAULT]
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog()).SerializeToString())
    with pytest.raises(ValueError, match="record 0 is a classify_log, only predict is supported"):
        read_warmup_requests(path)
