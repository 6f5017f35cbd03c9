"""TensorFlow Serving's own expectations, ported case by case, against a real `impasto serve`.

Each test names the upstream file and test it ports (tensorflow/serving):

    model_servers/tensorflow_model_server_test.py           (TensorflowModelServerTest)
    servables/tensorflow/predict_util_test.cc and predict_impl_test.cc   (PredictImplTest)
    servables/tensorflow/get_model_metadata_impl_test.cc    (GetModelMetadataImplTest)
    model_servers/get_model_status_impl_test.cc             (GetModelStatusImplTest)
    model_servers/http_rest_api_handler_test.cc             (HttpRestApiHandlerTest)

The models are built in the test (`tfserving_models`) with upstream's signatures, keys and versions.
Two servers serve the module: `server` (no batching) and `batching_server` (batching on, the model
config polled every second, gRPC channel arguments set; its config-reload test runs last).
"""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
import tfserving_models as models
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from impasto.testing import ServerProcess

VERSION = models.VERSION
LABELLED = "saved_model_half_plus_two_2_versions"
LABEL, MISSING_LABEL = "Version_Label", "Version_Nonexistent"


def _entry(name, base, versions=(), labels=None) -> str:
    policy = "".join(f" versions: {v}" for v in versions)
    text = f'  config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow"'
    if policy:
        text += f" model_version_policy {{ specific {{{policy} }} }}"
    for label, version in (labels or {}).items():
        text += f' version_labels {{ key: "{label}" value: {version} }}'
    return text + " }\n"


def _config(*entries) -> str:
    return "model_config_list {\n" + "".join(entries) + "}\n"


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict:
    """Every test model under its upstream directory name, version 123 (the 2-version model also 124)."""
    root = tmp_path_factory.mktemp("tfserving_testdata")
    dirs = {name: root / name for name in (
        "saved_model_half_plus_two_cpu", "half_plus_two", "saved_model_half_plus_three", LABELLED,
        "saved_model_counter", "bad_half_plus_two", "tf_saved_model_save", "tf_saved_model_save_multiple_signatures",
        "keras_sequential_saved_model_save", "keras_distributed_saved_model_save")}
    distributed = subprocess.Popen(  # Needs its own process (virtual CPUs); built while the others are.
        [sys.executable, "-m", "tfserving_models", "keras_distributed",
         str(dirs["keras_distributed_saved_model_save"] / "00000123")], cwd=Path(__file__).parent,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    models.save_half_plus(dirs["saved_model_half_plus_two_cpu"] / "00000123", classify_x2=False)
    models.save_half_plus(dirs["half_plus_two"] / "00000123")
    models.save_half_plus(dirs["saved_model_half_plus_three"] / "00000123", b=3.0, classify_x2=False)
    for version in ("00000123", "00000124"):
        models.save_half_plus(dirs[LABELLED] / version)
    models.save_counter(dirs["saved_model_counter"] / "00000123")
    models.save_without_signatures(dirs["bad_half_plus_two"] / "00000123")
    models.save_tf2_product(dirs["tf_saved_model_save"] / "00000123")
    models.save_tf2_two_signatures(dirs["tf_saved_model_save_multiple_signatures"] / "00000123")
    models.save_keras_sequential(dirs["keras_sequential_saved_model_save"] / "00000123")
    _, errors = distributed.communicate(timeout=300)
    assert distributed.returncode == 0, errors.decode(errors="replace")[-3000:]
    dirs["root"] = root
    return dirs


@pytest.fixture(scope="module")
def server(model_dirs, start_server, tmp_path_factory) -> ServerProcess:
    """One server for the single-model and good_model_config cases: "default" is saved_model_half_plus_two_cpu,
    "test_model" TensorFlow's half_plus_two, LABELLED version 123 only with its label (as the REST handler test
    configures it); Prometheus on; a Unix socket."""
    folder = tmp_path_factory.mktemp("conformance_server")
    config = folder / "models.config"
    config.write_text(_config(
        _entry("default", model_dirs["saved_model_half_plus_two_cpu"]),
        _entry("half_plus_two", model_dirs["half_plus_two"]),
        _entry("half_plus_three", model_dirs["saved_model_half_plus_three"]),
        _entry("test_model", model_dirs["half_plus_two"]),
        _entry(LABELLED, model_dirs[LABELLED], [VERSION], {LABEL: VERSION}),
        _entry("counter", model_dirs["saved_model_counter"]),
        _entry("bad_half_plus_two", model_dirs["bad_half_plus_two"]),
        _entry("tf_saved_model_save", model_dirs["tf_saved_model_save"]),
        _entry("tf_saved_model_save_multiple_signatures", model_dirs["tf_saved_model_save_multiple_signatures"]),
        _entry("keras_sequential", model_dirs["keras_sequential_saved_model_save"]),
        _entry("keras_distributed", model_dirs["keras_distributed_saved_model_save"])))
    (folder / "monitoring.config").write_text(
        'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }')
    process = start_server(["--model_config_file", config, "--model_root", model_dirs["root"].parent,
                            "--monitoring_config_file", folder / "monitoring.config",
                            "--grpc_socket_path", folder / "grpc.sock", "--file_system_poll_wait_seconds", "0"])
    process.config_path, process.socket_path = config, folder / "grpc.sock"
    return process


@pytest.fixture(scope="module")
def batching_server(model_dirs, start_server, tmp_path_factory) -> ServerProcess:
    """Upstream's batching_config.txt, "default" (saved_model_half_plus_two_cpu) and LABELLED at versions 123
    and 124 (the GetModelStatus test's config); the config file is polled every second."""
    folder = tmp_path_factory.mktemp("conformance_batching")
    (folder / "batching_config.txt").write_text("max_batch_size { value: 128 }\nbatch_timeout_micros { value: 0 }\n"
                                                "max_enqueued_batches { value: 1000000 }\n"
                                                "num_batch_threads { value: 8 }\n")
    config = folder / "models.config"
    config.write_text(_config(_entry("default", model_dirs["saved_model_half_plus_two_cpu"]),
                              _entry(LABELLED, model_dirs[LABELLED], [VERSION, 124])))
    process = start_server(["--model_config_file", config, "--model_root", model_dirs["root"].parent,
                            "--enable_batching", "--batching_parameters_file", folder / "batching_config.txt",
                            "--model_config_file_poll_wait_seconds", "1", "--file_system_poll_wait_seconds", "0",
                            "--grpc_channel_arguments", "grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb"])
    process.config_path = config
    return process


def _stub(target: str, service=prediction_service_pb2_grpc.PredictionServiceStub):
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    return service(grpc.insecure_channel(target, options))


def _x_request(model="default", signature="serving_default", specify_output=True, batch_input=False,
               version=None) -> predict_pb2.PredictRequest:
    """VerifyPredictRequest's request: x = [2.0] (shape [1], or [1, 1] with batch_input)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    if batch_input:
        request.inputs["x"].tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append("y")
    return request


def _verify_predict(target: str, expected_output: float, expected_version: int, **request_args) -> None:
    """tensorflow_model_server_test.py's VerifyPredictRequest."""
    request = _x_request(**request_args)
    result = _stub(target).Predict(request, timeout=30)
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert len(result.outputs["y"].float_val) == 1
    assert result.outputs["y"].float_val[0] == expected_output
    assert result.model_spec.name == request.model_spec.name
    assert result.model_spec.signature_name == request.model_spec.signature_name
    assert result.model_spec.version.value == expected_version


def _error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value


def _rest(server: ServerProcess, path: str, body=None, method=None, raw: bytes | None = None):
    """(HTTP status, parsed JSON body) of one REST call."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(server.rest_url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


# tensorflow_model_server_test.py


def test_get_model_status(server):
    """testGetModelStatus."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    result = _stub(server.target, model_service_pb2_grpc.ModelServiceStub).GetModelStatus(request, timeout=30)
    assert len(result.model_version_status) == 1
    assert result.model_version_status[0].version == VERSION
    assert result.model_version_status[0].status.error_code == 0


def test_predict_saved_model(server):
    """testPredictSavedModel (_TestPredict): with and without an output filter."""
    _verify_predict(server.target, 3.0, VERSION)
    _verify_predict(server.target, 3.0, VERSION, specify_output=False)


def test_predict_batching(batching_server):
    """testPredictBatching: the same requests with batching on."""
    _verify_predict(batching_server.target, 3.0, VERSION)
    _verify_predict(batching_server.target, 3.0, VERSION, specify_output=False)


def test_good_grpc_channel_args(batching_server):
    """testGoodGrpcChannelArgs: the server started with grpc_channel_arguments serves."""
    _verify_predict(batching_server.target, 3.0, VERSION, specify_output=False)


def test_good_model_config(server):
    """testGoodModelConfig: half_plus_two and half_plus_three (a TF1 graph SavedModel) from one config file."""
    for model, expected in (("half_plus_two", 3.0), ("half_plus_three", 4.0)):
        _verify_predict(server.target, expected, VERSION, model=model)
        _verify_predict(server.target, expected, VERSION, model=model, specify_output=False)


def test_bad_model_config(start_server, tmp_path):
    """testBadModelConfig: an improperly formatted config file is refused, naming the message type."""
    bad = tmp_path / "bad_model_config.txt"
    bad.write_text("improperly formatted file")
    process = start_server(["--model_config_file", bad], wait=False)
    assert process.process.wait(120) == 2
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in process.log()


def test_model_config_reload_with_zero_poll_period(server, model_dirs):
    """testModelConfigReloadWithZeroPollPeriod: without polling, a rewritten config file changes nothing."""
    original = server.config_path.read_text()
    try:
        server.config_path.write_text(_config(_entry("half_plus_three", model_dirs["saved_model_half_plus_three"])))
        time.sleep(1)
        _verify_predict(server.target, 3.0, VERSION, model="half_plus_two", specify_output=False)
    finally:
        server.config_path.write_text(original)


def test_predict_rest(server):
    """testPredictREST."""
    assert _rest(server, "/v1/models/default:predict", {"instances": [2.0, 3.0, 4.0]}) == (
        200, {"predictions": [3.0, 3.5, 4.0]})


def test_predict_columnar_rest(server):
    """testPredictColumnarREST."""
    assert _rest(server, "/v1/models/default:predict", {"inputs": [2.0, 3.0, 4.0]}) == (
        200, {"outputs": [3.0, 3.5, 4.0]})


def test_get_status_rest(server):
    """testGetStatusREST."""
    assert _rest(server, "/v1/models/default") == (200, {"model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})


def _tensor_info(name: str, dtype: str, dims=None) -> dict:
    """One TensorInfo as TF Serving's JSON printer writes it (dims None: unknown rank)."""
    if dims is None:
        return {"dtype": dtype, "tensor_shape": {"dim": [], "unknown_rank": True}, "name": name}
    return {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(size), "name": ""} for size in dims],
                                             "unknown_rank": False}, "name": name}


def _signature_json(inputs: dict, outputs: dict, method: str) -> dict:
    return {"inputs": inputs, "outputs": outputs, "method_name": method, "defaults": {}}


def _half_plus_two_metadata(model: str, classify_x2: bool) -> dict:
    """testdata/half_plus_two_model_metadata.json (classify_x2 False) and
    saved_model_half_plus_two_2_versions_metadata.json (True), "defaults" included: SignatureDef's map field,
    printed empty by TF Serving's printer (the older file predates the field)."""
    batch_1 = [-1, 1]
    examples = _tensor_info("tf_example:0", "DT_STRING")
    signatures = {
        "regress_x2_to_y3": _signature_json({"inputs": _tensor_info("x2:0", "DT_FLOAT", batch_1)},
                                            {"outputs": _tensor_info("y3:0", "DT_FLOAT", batch_1)}, models.REGRESS),
        "serving_default": _signature_json({"x": _tensor_info("x:0", "DT_FLOAT", batch_1)},
                                           {"y": _tensor_info("y:0", "DT_FLOAT", batch_1)}, models.PREDICT),
        "classify_x_to_y": _signature_json({"inputs": examples}, {"scores": _tensor_info("y:0", "DT_FLOAT", batch_1)},
                                           models.CLASSIFY),
        "regress_x_to_y2": _signature_json({"inputs": examples}, {"outputs": _tensor_info("y2:0", "DT_FLOAT", batch_1)},
                                           models.REGRESS),
        "regress_x_to_y": _signature_json({"inputs": examples}, {"outputs": _tensor_info("y:0", "DT_FLOAT", batch_1)},
                                          models.REGRESS),
    }
    if classify_x2:
        signatures["classify_x2_to_y3"] = _signature_json({"inputs": _tensor_info("x2:0", "DT_FLOAT", batch_1)},
                                                          {"scores": _tensor_info("y3:0", "DT_FLOAT", batch_1)},
                                                          models.CLASSIFY)
    return {"model_spec": {"name": model, "signature_name": "", "version": "123"},
            "metadata": {"signature_def": {"signature_def": signatures}}}


def test_get_model_metadata_rest(server):
    """testGetModelMetadataREST: the JSON of testdata/half_plus_two_model_metadata.json, no "@type"."""
    assert _rest(server, "/v1/models/default/metadata") == (200, _half_plus_two_metadata("default", False))


def test_prometheus_endpoint(server):
    """testPrometheusEndpoint."""
    with urllib.request.urlopen(server.rest_url + "/monitoring/prometheus/metrics", timeout=30) as response:
        assert "# TYPE" in response.read().decode()


def test_predict_uds(server):
    """testPredictUDS: the same Predict over --grpc_socket_path."""
    _verify_predict(f"unix:{server.socket_path}", 3.0, VERSION, specify_output=False)


def test_tf_saved_model_save(server):
    """test_tf_saved_model_save: a TF2 SavedModel whose input has unknown rank; 3 * 2 * 2 = 12."""
    _verify_predict(server.target, 12.0, VERSION, model="tf_saved_model_save", specify_output=False)


def test_tf_saved_model_save_multiple_signatures(server):
    """test_tf_saved_model_save_multiple_signatures."""
    model = "tf_saved_model_save_multiple_signatures"
    _verify_predict(server.target, 2.0, VERSION, model=model, signature="custom_signature_key")
    _verify_predict(server.target, 1.0, VERSION, model=model)


@pytest.mark.parametrize("model", ["keras_sequential", "keras_distributed"])
def test_sequential_keras_saved_model_save(server, model):
    """test_sequential_keras_saved_model_save and test_distrat_sequential_keras_saved_model_save (built under a
    MirroredStrategy), with Keras 3's signature keys: tf.keras in TF 2.21 names the serving_default input
    "inputs" and the output "output_0" (Keras 2 used the layer names x and y). x = [[2.0]] gives 2.0."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["inputs"].CopyFrom(tf.make_tensor_proto([[2.0]], dtype=tf.float32))
    result = _stub(server.target).Predict(request, timeout=30)
    assert list(result.outputs["output_0"].float_val) == [2.0]
    assert result.model_spec.version.value == VERSION


# predict_util_test.cc and predict_impl_test.cc (PredictImplTest), model "test_model" version 123


def _test_model_request(signature="", key="x", value=2.0) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "test_model"
    request.model_spec.version.value = VERSION
    if signature:
        request.model_spec.signature_name = signature
    request.inputs[key].dtype = types_pb2.DT_FLOAT
    request.inputs[key].float_val.append(value)
    return request


def test_predict_missing_or_empty_model_spec(server):
    """MissingOrEmptyModelSpec: no model_spec and no name are INVALID_ARGUMENT, an unknown name NOT_FOUND
    (predict_impl_test; predict_util_test's harness bypasses the lookup)."""
    stub = _stub(server.target)
    request = predict_pb2.PredictRequest()
    assert _error(stub.Predict, request).code() == grpc.StatusCode.INVALID_ARGUMENT
    request.model_spec.name = ""
    assert _error(stub.Predict, request).code() == grpc.StatusCode.INVALID_ARGUMENT
    request.model_spec.name = "test"
    assert _error(stub.Predict, request).code() == grpc.StatusCode.NOT_FOUND


def test_predict_empty_input_list(server):
    """EmptyInputList."""
    request = _test_model_request()
    del request.inputs["x"]
    assert _error(_stub(server.target).Predict, request).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_predict_input_tensors_dont_match_model_spec_inputs(server):
    """InputTensorsDontMatchModelSpecInputs."""
    request = _test_model_request()
    del request.inputs["x"]
    request.inputs["unknown_key1"].CopyFrom(tf.make_tensor_proto(["any_value"]))
    request.inputs["unknown_key2"].CopyFrom(tf.make_tensor_proto([1.0]))
    error = _error(_stub(server.target).Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Sent extra: {unknown_key1,unknown_key2}" in error.details()
    assert "Missing but required: {x}" in error.details()


def test_predict_output_filters_dont_match_model_spec_outputs(server):
    """OutputFiltersDontMatchModelSpecOutputs: an unknown alias, then y (OK), then y twice."""
    stub = _stub(server.target)
    request = _test_model_request()
    request.output_filter.append("output_filter")
    error = _error(stub.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output tensor alias not found in signature: output_filter" in error.details()
    del request.output_filter[:]
    request.output_filter.append("y")
    stub.Predict(request, timeout=30)
    request.output_filter.append("y")
    error = _error(stub.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "duplicate output tensor alias: y" in error.details()


def test_predict_input_tensors_have_wrong_type(server):
    """InputTensorsHaveWrongType."""
    request = _test_model_request()
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(["any_value"]))
    request.output_filter.append("y")
    error = _error(_stub(server.target).Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Expects arg[0] to be float but string is provided" in error.details()


def test_predict_model_missing_signatures(server):
    """ModelMissingSignatures (bad_half_plus_two: a model without signatures): FAILED_PRECONDITION."""
    request = _test_model_request()
    request.model_spec.name = "bad_half_plus_two"
    error = _error(_stub(server.target).Predict, request)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == 'Serving signature key "serving_default" not found.'


def _expected_response(signature: str, key: str, value: float) -> predict_pb2.PredictResponse:
    expected = predict_pb2.PredictResponse()
    expected.model_spec.name = "test_model"
    expected.model_spec.version.value = VERSION
    expected.model_spec.signature_name = signature
    expected.outputs[key].dtype = types_pb2.DT_FLOAT
    expected.outputs[key].float_val.append(value)
    expected.outputs[key].tensor_shape.SetInParent()
    return expected


def test_predict_prediction_success(server):
    """PredictionSuccess: a scalar x = 2 (no shape) answers the scalar y = 3, the response exactly upstream's."""
    response = _stub(server.target).Predict(_test_model_request(), timeout=30)
    assert response == _expected_response("serving_default", "y", 3.0)


def test_predict_prediction_with_named_regression_signature(server):
    """PredictionWithNamedRegressionSignature: regress_x2_to_y3, 0.5 * 2 + 3 = 4."""
    response = _stub(server.target).Predict(_test_model_request("regress_x2_to_y3", "inputs"), timeout=30)
    assert response == _expected_response("regress_x2_to_y3", "outputs", 4.0)


def test_predict_prediction_with_named_classification_signature(server):
    """PredictionWithNamedClassificationSignature: classify_x2_to_y3."""
    response = _stub(server.target).Predict(_test_model_request("classify_x2_to_y3", "inputs"), timeout=30)
    assert response == _expected_response("classify_x2_to_y3", "scores", 4.0)


def test_predict_prediction_with_customized_signatures(server):
    """PredictionWithCustomizedSignatures: the counter's signatures in upstream's order (one has an output
    filter, one an input)."""
    stub = _stub(server.target)
    steps = [("get_counter", {}, (), 0.0), ("incr_counter", {}, (), 1.0), ("reset_counter", {}, (), 0.0),
             ("incr_counter", {}, ("output",), 1.0), ("incr_counter_by", {"delta": 3.0}, (), 4.0)]
    for signature, inputs, output_filter, expected in steps:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "counter"
        request.model_spec.version.value = VERSION
        request.model_spec.signature_name = signature
        request.output_filter.extend(output_filter)
        for key, value in inputs.items():
            request.inputs[key].dtype = types_pb2.DT_FLOAT
            request.inputs[key].float_val.append(value)
        response = stub.Predict(request, timeout=30)
        assert list(response.outputs["output"].float_val) == [expected], signature
        assert response.outputs["output"].tensor_shape == tf.TensorShape([]).as_proto()
        assert response.model_spec.signature_name == signature


# get_model_metadata_impl_test.cc (GetModelMetadataImplTest)


def test_metadata_empty_or_invalid_metadata_field_list(server):
    """EmptyOrInvalidMetadataFieldList."""
    stub = _stub(server.target)
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "test_model"
    assert _error(stub.GetModelMetadata, request).code() == grpc.StatusCode.INVALID_ARGUMENT
    request.metadata_field.append("some_stuff")
    assert _error(stub.GetModelMetadata, request).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_metadata_missing_or_empty_model_spec(server):
    """MissingOrEmptyModelSpec."""
    stub = _stub(server.target)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    assert _error(stub.GetModelMetadata, request).code() == grpc.StatusCode.INVALID_ARGUMENT
    request.model_spec.name = ""
    assert _error(stub.GetModelMetadata, request).code() == grpc.StatusCode.INVALID_ARGUMENT
    request.model_spec.name = "test"
    assert _error(stub.GetModelMetadata, request).code() == grpc.StatusCode.NOT_FOUND


def test_metadata_returns_signatures_for_valid_model(server, model_dirs):
    """ReturnsSignaturesForValidModel: the request's model_spec back, and the SavedModel's SignatureDefs."""
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "test_model"
    request.model_spec.version.value = VERSION
    response = _stub(server.target).GetModelMetadata(request, timeout=30)
    assert response.model_spec == request.model_spec
    assert list(response.metadata) == ["signature_def"]
    received = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(received)
    saved = saved_model_pb2.SavedModel.FromString((model_dirs["half_plus_two"] / "00000123" / "saved_model.pb")
                                                  .read_bytes())
    expected = saved.meta_graphs[0].signature_def
    assert len(received.signature_def) == len(expected) == 6
    for name in ("regress_x_to_y", "serving_default"):
        assert received.signature_def[name] == expected[name]


# get_model_status_impl_test.cc (GetModelStatusImplTest): LABELLED at versions 123 and 124


def _status_request(name=None, version=None, label="") -> get_model_status_pb2.GetModelStatusRequest:
    request = get_model_status_pb2.GetModelStatusRequest()
    if name is not None:
        request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    return request


def test_status_missing_or_empty_model_spec_failure(batching_server):
    """MissingOrEmptyModelSpecFailure."""
    stub = _stub(batching_server.target, model_service_pb2_grpc.ModelServiceStub)
    assert _error(stub.GetModelStatus, _status_request()).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _error(stub.GetModelStatus, _status_request("")).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_status_invalid_model_name_and_version_failure(batching_server):
    """InvalidModelNameFailure and InvalidModelVersionFailure: NOT_FOUND."""
    stub = _stub(batching_server.target, model_service_pb2_grpc.ModelServiceStub)
    assert _error(stub.GetModelStatus, _status_request("nonexistent_model")).code() == grpc.StatusCode.NOT_FOUND
    assert _error(stub.GetModelStatus, _status_request(LABELLED, 125)).code() == grpc.StatusCode.NOT_FOUND


def test_status_all_and_single_version_success(batching_server):
    """AllVersionsSuccess and SingleVersionSuccess; a version label alone reports every version too, since
    GetModelStatus reads only model_spec.version."""
    stub = _stub(batching_server.target, model_service_pb2_grpc.ModelServiceStub)
    for request, versions in ((_status_request(LABELLED), {123, 124}), (_status_request(LABELLED, 123), {123}),
                              (_status_request(LABELLED, label="any_label"), {123, 124})):
        response = stub.GetModelStatus(request, timeout=30)
        assert {status.version for status in response.model_version_status} == versions
        for status in response.model_version_status:
            assert (status.status.error_code, status.status.error_message) == (0, "")


# http_rest_api_handler_test.cc (HttpRestApiHandlerTest): LABELLED at version 123, label Version_Label


def test_rest_path_regex(server):
    """kPathRegex: /v1/models is an API path (400: missing model name); /statuspage and /index are not (404)."""
    status, body = _rest(server, "/v1/models")
    assert status == 400 and "Missing model name" in body["error"]
    for path in ("/statuspage", "/index"):
        assert _rest(server, path)[0] == 404


def test_rest_unsupported_api_calls(server):
    """UnsupportedApiCalls: each is INVALID_ARGUMENT (400) with upstream's message."""
    cases = [("GET", "/v1/foo", "Malformed request"), ("POST", "/v1/foo", "Malformed request"),
             ("GET", "/v1/models", "Missing model name"), ("GET", "/v1/models/debug/model_name", "Malformed request"),
             ("POST", "/v1/models", "Malformed request"), ("GET", "/v1/models/foo:predict", "Malformed request"),
             ("GET", "/v1/models/foo/version/50:predict", "Malformed request"),
             ("POST", "/v1/models/foo/version/50:regress", "Malformed request"),
             ("POST", "/v1/models/foo/versions/HELLO:regress", "Malformed request"),
             ("POST", f"/v1/models/foo/versions/{2**64 - 1}:regress", "Failed to convert version"),
             ("POST", "/v1/models/foo/metadata", "Malformed request"),
             ("POST", "/v1/models/foo/label/some_label:regress", "Malformed request"),
             ("POST", "/v1/models/foo/versions/50/labels/some_label:regress", "Malformed request"),
             ("POST", "/v1/models/foo/versions/some_label:regress", "Malformed request")]
    for method, path, message in cases:
        status, body = _rest(server, path, raw=b"" if method == "POST" else None, method=method)
        assert status == 400 and message in body["error"], (method, path, body)


def test_rest_predict_model_name_version_errors(server):
    """PredictModelNameVersionErrors: NOT_FOUND (404)."""
    for path in ("/v1/models/foo:predict", "/v1/models/foo/versions/50:predict", f"/v1/models/{LABELLED}99:predict"):
        assert _rest(server, path, {"instances": [1]})[0] == 404, path


def test_rest_predict_request_errors(server):
    """PredictRequestErrors."""
    path = f"/v1/models/{LABELLED}:predict"
    cases = [(path, b"", "JSON Parse error: The document is empty"),
             (path, b"instances = [1, 2]", "JSON Parse error: Invalid value"),
             (path, b'{ "instances": ["x", "y"] }', "not of expected type: float"),
             (f"/v1/models/{LABELLED}/labels/{MISSING_LABEL}:predict", b'{ "instances": ["x", "y"] }',
              "Unrecognized servable version label"),
             (path, b'{ "signature_name": 100 }', "'signature_name' key must be a string value.")]
    for url, raw, message in cases:
        status, body = _rest(server, url, raw=raw)
        assert status == 400 and message in body["error"], (raw, body)


def test_rest_predict(server):
    """Predict: latest version, a version, a label, an explicit signature, columnar inputs."""
    cases = [(f"/v1/models/{LABELLED}:predict", {"instances": [[1.0, 2.0], [3.0, 4.0]]},
              {"predictions": [[2.5, 3.0], [3.5, 4.0]]}),
             (f"/v1/models/{LABELLED}/versions/{VERSION}:predict", {"instances": [1.0, 2.0]},
              {"predictions": [2.5, 3.0]}),
             (f"/v1/models/{LABELLED}/labels/{LABEL}:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
             (f"/v1/models/{LABELLED}/versions/{VERSION}:predict",
              {"signature_name": "serving_default", "instances": [3.0, 4.0]}, {"predictions": [3.5, 4.0]}),
             (f"/v1/models/{LABELLED}/versions/{VERSION}:predict",
              {"signature_name": "serving_default", "inputs": [3.0, 4.0]}, {"outputs": [3.5, 4.0]})]
    for path, body, expected in cases:
        assert _rest(server, path, body) == (200, expected), path


def test_rest_get_status(server):
    """GetStatus: all versions, one version, a label."""
    expected = {"model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    for path in (f"/v1/models/{LABELLED}", f"/v1/models/{LABELLED}/versions/{VERSION}",
                 f"/v1/models/{LABELLED}/labels/{LABEL}"):
        assert _rest(server, path) == (200, expected), path


def test_rest_get_model_metadata(server):
    """GetModelMetadata: the JSON of testdata/saved_model_half_plus_two_2_versions_metadata.json."""
    assert _rest(server, f"/v1/models/{LABELLED}/metadata") == (200, _half_plus_two_metadata(LABELLED, True))


# The issue's cases beyond upstream's tests (same models, same server)


def test_shapes_are_left_to_the_graph(server):
    """x declared [-1, 1] and fed [1], [3], [] or [2, 2]: the graph's answer, in the request's shape."""
    stub = _stub(server.target)
    for x in (np.array([2.0]), np.array([1.0, 2.0, 5.0]), np.array(2.0), np.array([[1.0, 2.0], [3.0, 4.0]])):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "default"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(x.astype(np.float32)))
        y = tf.make_ndarray(stub.Predict(request, timeout=30).outputs["y"])
        np.testing.assert_array_equal(y, 0.5 * x + 2)
    assert _rest(server, "/v1/models/default:predict", {"instances": [1.0, 2.0, 5.0]}) == (
        200, {"predictions": [2.5, 3.0, 4.5]})


def test_tf2_shapes_are_left_to_tensorflow(server):
    """A TF2 model's signature function gets the request's shape too: Keras's identity model declared
    [-1, 1] and fed [3], [] or [1, 2] answers the same values in the same shape."""
    stub = _stub(server.target)
    for x in (np.array([1.0, 2.0, 3.0]), np.array(2.0), np.array([[1.0, 2.0]])):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "keras_sequential"
        request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(x.astype(np.float32)))
        y = tf.make_ndarray(stub.Predict(request, timeout=30).outputs["output_0"])
        np.testing.assert_array_equal(y, x)


def test_graph_errors_keep_tensorflow_status_code(server):
    """A string that is not a tf.Example fed to regress_x_to_y: the graph's INVALID_ARGUMENT; still serving."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "regress_x_to_y"
    request.inputs["inputs"].CopyFrom(tf.make_tensor_proto([b"not an example"]))
    assert _error(_stub(server.target).Predict, request).code() == grpc.StatusCode.INVALID_ARGUMENT
    _verify_predict(server.target, 3.0, VERSION)


def test_status_codes_of_unknown_signature_and_label(server):
    """Unknown signature: FAILED_PRECONDITION over gRPC, 400 over REST; unknown label: INVALID_ARGUMENT / 400."""
    stub = _stub(server.target)
    error = _error(stub.Predict, _x_request(signature="nope"))
    assert (error.code(), error.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                               'Serving signature key "nope" not found.')
    request = _x_request(model=LABELLED)
    request.model_spec.version_label = MISSING_LABEL
    error = _error(stub.Predict, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                               f"Unrecognized servable version label: {MISSING_LABEL}")
    status, body = _rest(server, "/v1/models/default:predict", {"signature_name": "nope", "instances": [1.0]})
    assert status == 400 and body["error"] == 'Serving signature name: "nope" not found in signature def'
    status, body = _rest(server, "/v1/models/default:predict", {})
    assert status == 400 and body["error"] == "Missing 'inputs' or 'instances' key"


def test_long_error_message_is_truncated_not_dropped(server):
    """A 10 KB error message arrives as NOT_FOUND, cut to 1024 characters + "...TRUNCATED"
    (grpc_status_util.cc), instead of breaking the client's stream on the metadata size limit."""
    error = _error(_stub(server.target).Predict, _x_request(model="m" * 10_000))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details().startswith("Servable not found for request: Latest(mmm")
    assert error.details().endswith("...TRUNCATED") and len(error.details()) == 1024 + len("...TRUNCATED")


def test_six_megabyte_request_is_answered(server):
    """No message or batch limit of the server's own for a model that is not impasto's: a 6 MB float
    request (1.5 M values) is answered in full."""
    x = np.arange(1_572_864, dtype=np.float32)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    assert request.ByteSize() > 6_000_000
    y = tf.make_ndarray(_stub(server.target).Predict(request, timeout=120).outputs["y"])
    np.testing.assert_array_equal(y, 0.5 * x + 2)


def test_memory_guard_applies_to_every_model(server):
    """A TensorProto of a few bytes whose shape claims 2^40 floats is refused before anything is allocated."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].tensor_shape.dim.add().size = 2**40
    request.inputs["x"].float_val.append(1.0)
    error = _error(_stub(server.target).Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "more than this server decodes" in error.details()


# Last: rewrites the batching server's config.


def test_model_config_reload(batching_server, model_dirs):
    """testModelConfigReload: the polled config file switches the server from half_plus_two to half_plus_three."""
    _verify_predict(batching_server.target, 3.0, VERSION, specify_output=False)
    batching_server.config_path.write_text(_config(_entry("half_plus_three",
                                                          model_dirs["saved_model_half_plus_three"])))
    deadline = time.monotonic() + 30
    while True:
        try:
            _verify_predict(batching_server.target, 4.0, VERSION, model="half_plus_three", specify_output=False)
            break
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
