"""A real `impasto serve` process answering the stock TF Serving gRPC stubs."""

import concurrent.futures
import re
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from impasto.export import keys
from impasto.model import image_io


@pytest.fixture(scope="module")
def channel(tiny_server):
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(tiny_server.target, options) as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _request(model="tiny", inputs=None, version=None, label="", signature=""):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    for key, value in (inputs or {}).items():
        proto = value if isinstance(value, type(request.inputs[key])) else tf.make_tensor_proto(value)
        request.inputs[key].CopyFrom(proto)
    return request


def _images_request(images, **spec):
    return _request(inputs={keys.IMAGE_BYTES: tf.make_tensor_proto(images, dtype=tf.string)}, **spec)


def _rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value


def test_health_reports_serving_for_server_and_both_services(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    assert _rpc_error(health.Check, health_pb2.HealthCheckRequest(service="nope")).code() == grpc.StatusCode.NOT_FOUND


def test_predict_round_trip_keeps_each_image_size_and_echoes_the_model_spec(stub, small_images):
    names = ["chelsea.png", "coffee.png", "rocket.png"]
    response = stub.Predict(_images_request([small_images[n] for n in names]), timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value) == ("tiny", 2)
    assert response.model_spec.signature_name == keys.SERVING_DEFAULT
    outputs = tf.make_ndarray(response.outputs[keys.STYLIZED_IMAGE_BYTES])
    assert len(outputs) == 3
    for name, png in zip(names, outputs):
        assert png.startswith(b"\x89PNG")
        stylized = image_io.decode_image_bytes(png)
        original = image_io.decode_image_bytes(small_images[name])
        assert stylized.shape == original.shape
        assert np.abs(stylized - original).mean() > 5  # Stylized, not passed through.


def test_versions_and_labels_select_the_version(stub, small_images):
    for spec, version in (({"version": 1}, 1), ({"version": 2}, 2), ({"label": "stable"}, 1),
                          ({"label": "canary"}, 2), ({}, 2)):
        response = stub.Predict(_images_request([small_images["koala.png"]], **spec), timeout=30)
        assert response.model_spec.version.value == version, spec


def test_unknown_model_version_label_and_signature_have_tf_serving_codes(stub, small_images):
    image = [small_images["koala.png"]]
    cases = [({"model": "nope"}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
             ({"version": 7}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(tiny, 7)"),
             ({"label": "beta"}, grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: beta"),
             ({"signature": "nope"}, grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.')]
    for spec, code, message in cases:
        model = spec.pop("model", "tiny")
        request = _images_request(image, **spec)
        request.model_spec.name = model
        error = _rpc_error(stub.Predict, request)
        assert (error.code(), error.details()) == (code, message)


def test_corrupt_image_is_invalid_argument_and_the_server_keeps_serving(stub, small_images, data_dir):
    for bad in ((data_dir / "edge_random_bytes.jpg").read_bytes(), (data_dir / "edge_truncated.jpg").read_bytes(), b""):
        error = _rpc_error(stub.Predict, _images_request([bad]))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert "Graph execution error" not in error.details()
    response = stub.Predict(_images_request([small_images["chelsea.png"]]), timeout=30)
    assert len(response.outputs[keys.STYLIZED_IMAGE_BYTES].string_val) == 1


def test_bad_inputs_are_invalid_argument_in_tf_serving_words(stub, small_images):
    image = tf.make_tensor_proto([small_images["koala.png"]], dtype=tf.string)
    cases = [
        ({keys.IMAGE_BYTES: tf.make_tensor_proto([1.0, 2.0])}, "",
         r"Expects arg\[0\] to be string but float is provided \(input 'image_bytes'\)"),
        ({"pixels": image}, "", r"Sent extra: \{pixels\}. Missing but required: \{image_bytes\}"),
        ({keys.IMAGE_BYTES: image, "extra": image}, "", r"Sent extra: \{extra\}"),
        ({keys.IMAGE_BYTES: tf.make_tensor_proto(np.array([], dtype=object), dtype=tf.string)}, "", "empty batch"),
        ({keys.IMAGE_BYTES: image}, keys.STYLIZE_CONTROLS, r"Missing but required: \{preserve_color,strength\}"),
        ({keys.IMAGES: tf.make_tensor_proto(np.zeros((4, 4, 3), np.float32))}, keys.STYLIZE_TENSOR,
         r"has shape \[4, 4, 3\]"),
    ]
    for inputs, signature, pattern in cases:
        error = _rpc_error(stub.Predict, _request(inputs=inputs, signature=signature))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert re.search(pattern, error.details()), error.details()


def test_controls_and_tensor_signatures(stub, small_images):
    image = small_images["coffee.png"]
    inputs = {keys.IMAGE_BYTES: tf.make_tensor_proto([image, image], dtype=tf.string),
              keys.STRENGTH: tf.make_tensor_proto([0.0, 1.0], dtype=tf.float32),
              keys.PRESERVE_COLOR: tf.make_tensor_proto([False, True])}
    response = stub.Predict(_request(inputs=inputs, signature=keys.STYLIZE_CONTROLS), timeout=30)
    unchanged, styled = (image_io.decode_image_bytes(png)
                         for png in tf.make_ndarray(response.outputs[keys.STYLIZED_IMAGE_BYTES]))
    original = image_io.decode_image_bytes(image)
    assert np.abs(unchanged - original).max() <= 1  # Strength 0 gives the photo back.
    assert np.abs(styled - original).mean() > 5
    pixels = original[None]
    response = stub.Predict(_request(inputs={keys.IMAGES: pixels}, signature=keys.STYLIZE_TENSOR), timeout=30)
    assert tf.make_ndarray(response.outputs[keys.STYLIZED_IMAGES]).shape == pixels.shape


def test_output_filter(stub, small_images):
    request = _images_request([small_images["koala.png"]])
    request.output_filter.append("nope")
    error = _rpc_error(stub.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "output tensor alias not found" in error.details()


def test_message_larger_than_grpc_default_limit_is_accepted(stub):
    noise = np.random.default_rng(0).integers(0, 256, (1300, 1300, 3)).astype(np.float32)
    data = image_io.encode_image(noise)
    assert len(data) > 4 * 1024 * 1024
    response = stub.Predict(_images_request([data]), timeout=60)
    stylized = image_io.decode_image_bytes(response.outputs[keys.STYLIZED_IMAGE_BYTES].string_val[0])
    assert stylized.shape == (1300, 1300, 3)


def test_classify_regress_multi_inference_are_unimplemented(stub):
    error = _rpc_error(stub.Classify, classification_pb2.ClassificationRequest())
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED and "use Predict" in error.details()


def test_model_metadata_packs_the_signature_def_map(stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "tiny"
    request.model_spec.version_label = "stable"
    response = stub.GetModelMetadata(request, timeout=10)
    assert (response.model_spec.name, response.model_spec.version.value) == ("tiny", 1)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    defs = signatures.signature_def
    assert {keys.SERVING_DEFAULT, keys.SERVING_NOXLA, keys.STYLIZE_TENSOR, keys.STYLIZE_CONTROLS} <= set(defs)
    assert defs[keys.STYLIZE_CONTROLS].inputs[keys.PRESERVE_COLOR].dtype == tf.bool.as_datatype_enum
    assert defs[keys.SERVING_DEFAULT].outputs[keys.STYLIZED_IMAGE_BYTES].dtype == tf.string.as_datatype_enum
    request.ClearField("metadata_field")
    assert _rpc_error(stub.GetModelMetadata, request).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_model_status(channel):
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "tiny"
    response = models.GetModelStatus(request, timeout=10)
    assert [(s.version, s.state) for s in response.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE), (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
    request.model_spec.version.value = 3
    assert _rpc_error(models.GetModelStatus, request).code() == grpc.StatusCode.NOT_FOUND


def test_concurrent_mixed_size_requests_are_batched_and_split_correctly(stub, small_images, tiny_server):
    names = ["chelsea.png", "coffee.png", "rocket.png", "koala.png"] * 3
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        futures = [pool.submit(stub.Predict, _images_request([small_images[name]]), timeout=60) for name in names]
        responses = [future.result() for future in futures]
    for name, response in zip(names, responses):
        png = response.outputs[keys.STYLIZED_IMAGE_BYTES].string_val[0]
        assert image_io.decode_image_bytes(png).shape == image_io.decode_image_bytes(small_images[name]).shape
    with urllib.request.urlopen(tiny_server.rest_url + "/monitoring/prometheus/metrics", timeout=10) as response:
        metrics = response.read().decode()
    batches = re.search(r'processed_batch_size_count\{model_name="tiny",model_version="2"\} (\d+)', metrics)
    examples = re.search(r'processed_batch_size_sum\{model_name="tiny",model_version="2"\} (\d+)', metrics)
    assert int(batches.group(1)) < int(examples.group(1))  # Some batch held more than one request.
