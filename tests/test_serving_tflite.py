"""``model.tflite`` in an export (`impasto export --tflite-model`) and `impasto serve --prefer_tflite_model`.

The same version directory served both ways by real `impasto serve` processes: from its
SavedModel (all four signatures) and, with the flag, from its LiteRT model (stylize_tensor
only, as tensorflow_model_server serves a TF Lite model's own signatures).
"""

import json
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from impasto.export import cli as export_cli
from impasto.export import keys
from impasto.export.exporter import export_model
from impasto.export.signatures import ServingConfig
from impasto.export.warmup import read_warmup_requests, warmup_path
from impasto.model.errors import InvalidInputError
from impasto.model.feedforward.transformer import TransformerNet

CONFIG = ServingConfig(max_side=64, ladder=(64,), target="cpu")


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory, export_network):
    """Version 1 of a CPU export with model.tflite, warmed at 48 x 40."""
    models = tmp_path_factory.mktemp("tflite_models")
    return export_model(export_network, {"width": 0.125, "style": "test"}, models / "tiny", 1, CONFIG,
                        warmup_sizes=((48, 40),), tflite_model=True)


@pytest.fixture(scope="module")
def images():
    """Two random float32 RGB images in [0, 255], 45 x 53 (not a multiple of 4, smaller than the bucket)."""
    return np.random.default_rng(3).uniform(0, 255, [2, 45, 53, 3]).astype(np.float32)


@pytest.fixture(scope="module")
def savedmodel_output(version_dir, images):
    """The SavedModel's stylize_tensor on `images`."""
    signature = tf.saved_model.load(str(version_dir)).signatures[keys.STYLIZE_TENSOR]
    return signature(images=tf.constant(images))[keys.STYLIZED_IMAGES].numpy()


def _predict(server, images: np.ndarray, signature: str = keys.STYLIZE_TENSOR) -> np.ndarray:
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "tiny", signature
    request.inputs[keys.IMAGES].CopyFrom(tf.make_tensor_proto(images))
    with grpc.insecure_channel(server.target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)
    return tf.make_ndarray(response.outputs[keys.STYLIZED_IMAGES])


def _signature_names(server) -> list[str]:
    with urllib.request.urlopen(server.rest_url + "/v1/models/tiny/metadata", timeout=30) as response:
        return sorted(json.loads(response.read())["metadata"]["signature_def"]["signature_def"])


def test_export_writes_model_tflite_with_the_stylize_tensor_contract(version_dir):
    interpreter = Interpreter(model_path=str(version_dir / keys.TFLITE_MODEL_FILE))
    assert interpreter.get_signature_list() == {
        keys.STYLIZE_TENSOR: {"inputs": [keys.IMAGES], "outputs": [keys.STYLIZED_IMAGES]}}
    metadata = json.loads((version_dir / keys.ASSETS_EXTRA / keys.METADATA_FILE).read_text())
    assert metadata["tflite_model"] == keys.TFLITE_MODEL_FILE
    assert metadata["warmup_signature"] == keys.STYLIZE_TENSOR


def test_warmup_calls_the_signature_both_forms_serve(version_dir):
    requests = read_warmup_requests(warmup_path(version_dir))
    assert [request.model_spec.signature_name for request in requests] == [keys.STYLIZE_TENSOR]
    assert tf.make_ndarray(requests[0].inputs[keys.IMAGES]).shape == (1, 48, 40, 3)


def test_tflite_model_equals_the_savedmodel_within_half_a_level(version_dir, images, savedmodel_output):
    runner = Interpreter(model_path=str(version_dir / keys.TFLITE_MODEL_FILE)).get_signature_runner(
        keys.STYLIZE_TENSOR)
    output = runner(images=images)[keys.STYLIZED_IMAGES]
    assert output.shape == images.shape
    assert np.abs(output - savedmodel_output).max() <= 0.5


def test_a_default_export_has_no_model_tflite(serving_version_dir):
    assert not (serving_version_dir / keys.TFLITE_MODEL_FILE).exists()
    requests = read_warmup_requests(warmup_path(serving_version_dir))
    assert {request.model_spec.signature_name for request in requests} == {keys.SERVING_DEFAULT}


def test_the_cli_writes_model_tflite_for_the_cpu_target_only(tmp_path, capsys, export_bundle):
    models = tmp_path / "models"
    assert export_cli.run([str(export_bundle), "--model-base", str(models), "--name", "tiny", "--tflite-model",
                           "--warmup-sizes", "32x32"]) == 0
    assert f"with {keys.TFLITE_MODEL_FILE}" in capsys.readouterr().out
    assert (models / "tiny" / "1" / keys.TFLITE_MODEL_FILE).is_file()
    assert export_cli.run([str(export_bundle), "--model-base", str(models), "--name", "gpu", "--target", "gpu",
                           "--tflite-model"]) == 2
    assert "--tflite-model is for CPU servers" in capsys.readouterr().err
    assert not (models / "gpu").exists()
    with pytest.raises(InvalidInputError, match="cpu target"):
        export_model(TransformerNet(width=0.125), {}, tmp_path / "api", 1, ServingConfig(target="gpu"),
                     tflite_model=True)


def test_prefer_tflite_model_serves_the_litert_form_and_its_signature_only(
        version_dir, images, savedmodel_output, start_server):
    server = start_server(["--model_base_path", version_dir.parent, "--model_name", "tiny", "--prefer_tflite_model",
                           "--file_system_poll_wait_seconds", "0"])
    assert "model tiny version 1: loaded in " in server.log() and f"from its {keys.TFLITE_MODEL_FILE}" in server.log()
    assert _signature_names(server) == [keys.STYLIZE_TENSOR]
    assert np.abs(_predict(server, images) - savedmodel_output).max() <= 0.5
    with pytest.raises(grpc.RpcError) as missing:
        _predict(server, images, keys.SERVING_DEFAULT)
    assert missing.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    for bad, named in ((images[..., :2], "has shape [2, 45, 53, 2]"), (images[:, :0], "no elements")):
        with pytest.raises(grpc.RpcError) as refused:
            _predict(server, bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and named in refused.value.details()
    assert np.abs(_predict(server, images[:1]) - savedmodel_output[:1]).max() <= 0.5  # Still serving.


def test_without_the_flag_the_same_version_serves_its_savedmodel(version_dir, images, savedmodel_output,
                                                                 start_server):
    server = start_server(["--model_base_path", version_dir.parent, "--model_name", "tiny",
                           "--file_system_poll_wait_seconds", "0"])
    assert "from its SavedModel" in server.log() and "(1 requests)" in server.log()
    assert set(keys.SIGNATURES) <= set(_signature_names(server))  # With __saved_model_init_op, as TF Serving.
    np.testing.assert_allclose(_predict(server, images), savedmodel_output, atol=1e-3)
