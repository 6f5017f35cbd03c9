"""`impasto serve` start-up: each export target on a server without XLA, load and warmup logging, the XLA cache."""

import shutil
import socket

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from impasto import testing
from impasto.export import keys
from impasto.export.exporter import export_model
from impasto.export.signatures import ServingConfig
from impasto.export.warmup import warmup_path
from impasto.serving import xla

WARMUP = ((64, 48),)


@pytest.fixture(scope="module")
def models(tmp_path_factory, export_network):
    """{"cpu": base path, "gpu": base path, "gpu_unwarmed": base path}: version 1 of each, one 64 px bucket;
    "gpu_unwarmed" is a copy of "gpu" without its warmup file."""
    root = tmp_path_factory.mktemp("startup_models")
    metadata = {"width": 0.125, "style": "test"}
    for name, target in (("cpu", "cpu"), ("gpu", "gpu")):
        export_model(export_network, metadata, root / name, 1, ServingConfig(max_side=64, ladder=(64,), target=target),
                     warmup_sizes=WARMUP)
    shutil.copytree(root / "gpu", root / "gpu_unwarmed")
    warmup_path(root / "gpu_unwarmed" / "1").unlink()
    return {name: root / name for name in ("cpu", "gpu", "gpu_unwarmed")}


def _predict(server, model: str, image: bytes, signature: str = "") -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    request.inputs[keys.IMAGE_BYTES].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
    with grpc.insecure_channel(server.target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=120)
    return response.outputs[keys.STYLIZED_IMAGE_BYTES].string_val[0]


def test_default_export_serves_without_xla_and_logs_load_and_warmup(models, start_server, small_images):
    """As a stock CPU tensorflow_model_server would: every XLA compile fails, the default export needs none."""
    server = start_server(["--model_base_path", models["cpu"], "--model_name", "style", "--disable_xla",
                           "--file_system_poll_wait_seconds", "0"], rest=False)
    output = _predict(server, "style", small_images["chelsea.png"])
    assert tf.io.decode_png(output).shape[:2] == tf.io.decode_png(small_images["chelsea.png"]).shape[:2]
    log = server.log()
    assert "XLA compilation disabled" in log
    assert "model style version 1: loaded in " in log and "(1 requests)" in log
    assert log.index("warmed up in") < log.index("serving models")


def test_gpu_target_needs_xla_where_serving_noxla_does_not(models, start_server, small_images):
    """The switch has teeth: the GPU export's warmed serving_default cannot load without XLA, its unwarmed copy
    loads but serving_default fails, while serving_noxla serves."""
    config = models["gpu"].parent / "gpu_models.config"
    config.write_text("model_config_list {\n" + "".join(
        f'  config {{ name: "{name}" base_path: "{models[name]}" model_platform: "tensorflow" }}\n'
        for name in ("gpu", "gpu_unwarmed")) + "}\n")
    server = start_server(["--model_config_file", config, "--disable_xla", "--file_system_poll_wait_seconds", "0"],
                          rest=False)
    assert "model gpu version 1 failed to load" in server.log() and "XLA compilation disabled" in server.log()
    with pytest.raises(grpc.RpcError) as caught:
        _predict(server, "gpu_unwarmed", small_images["coffee.png"])
    assert caught.value.code() == grpc.StatusCode.INTERNAL and "XLA compilation disabled" in caught.value.details()
    assert _predict(server, "gpu_unwarmed", small_images["coffee.png"], keys.SERVING_NOXLA).startswith(b"\x89PNG")


def test_xla_cache_dir_keeps_the_gpu_exports_compiled_programs(models, start_server, small_images, tmp_path):
    cache = tmp_path / "xla_cache"
    server = start_server(["--model_base_path", models["gpu"], "--model_name", "style", "--xla_cache_dir", cache,
                           "--file_system_poll_wait_seconds", "0"], rest=False, wait=False)
    server.wait_ready(timeout=600)  # XLA compiles while it loads; a busy shared machine can take minutes.
    assert _predict(server, "style", small_images["koala.png"]).startswith(b"\x89PNG")
    programs = list(cache.glob("xla_compile_cache__*.pb"))
    assert programs, server.log()  # Written by the warmup's compile.
    assert f"--tf_xla_persistent_cache_directory={cache.resolve()}" in server.log()


def test_an_unwritable_xla_cache_dir_exits_2(start_server, models, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    server = start_server(["--model_base_path", models["cpu"], "--xla_cache_dir", blocker / "cache"], wait=False)
    assert server.process.wait(timeout=120) == 2
    assert "--xla_cache_dir" in server.log() or "XLA cache directory" in server.log()


def test_the_cache_flag_is_found_before_tensorflow_loads():
    assert xla.cache_dir_in(["--port", "1", "--xla_cache_dir", "/c"]) == "/c"
    assert xla.cache_dir_in(["--xla_cache_dir=/d"]) == "/d"
    assert xla.cache_dir_in(["--model_base_path", "m"]) is None
    environ = {xla.FLAGS_VARIABLE: "--tf_xla_async_compilation=false"}
    assert xla.use_compilation_cache("/tmp", environ).endswith("--tf_xla_persistent_cache_directory=/tmp")
    assert xla.use_compilation_cache("/elsewhere", environ) == environ[xla.FLAGS_VARIABLE]  # The first one stays.


def test_the_test_server_starts_again_on_new_ports_when_its_port_was_taken(monkeypatch, serving_version_dir, tmp_path):
    """`ServerProcess` picks free ports before the child binds them; a port taken in between (by another
    test process) makes the child exit with "cannot listen on ...", and the harness starts it again."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    handed_out = iter([taken])
    real_free_port = testing.free_port
    monkeypatch.setattr(testing, "free_port", lambda: next(handed_out, None) or real_free_port())
    server = testing.ServerProcess(["--model_base_path", serving_version_dir.parent, "--model_name", "tiny"],
                                   tmp_path / "serve.log", rest=False)
    try:
        assert server.port == taken
        server.wait_ready()
        assert server.port != taken
        assert "serving models" in server.log()
    finally:
        server.stop()
        holder.close()
