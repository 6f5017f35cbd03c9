"""Version polling on a real `impasto serve`: hot reload under load, corrupt versions, removal, config reload.

The tests share one server and run in file order; each states the versions it starts from.
"""

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from impasto.export import keys

State = get_model_status_pb2.ModelVersionStatus.State


@pytest.fixture(scope="module")
def reload_server(tmp_path_factory, serving_version_dir, start_server):
    base = tmp_path_factory.mktemp("reload_models") / "tiny"
    shutil.copytree(serving_version_dir, base / "1")
    server = start_server(["--model_base_path", base, "--model_name", "tiny", "--file_system_poll_wait_seconds", "0.2",
                           "--max_request_bytes", "200000"])
    server.base = base
    with grpc.insecure_channel(server.target) as channel:
        server.predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
        server.models = model_service_pb2_grpc.ModelServiceStub(channel)
        yield server


def _request(image: bytes, model: str = "tiny") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs[keys.IMAGE_BYTES].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
    return request


def _states(server, model: str = "tiny") -> dict[int, tuple[int, str]]:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    response = server.models.GetModelStatus(request, timeout=10)
    return {s.version: (s.state, s.status.error_message) for s in response.model_version_status}


def _wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _publish(source, base, version: int) -> None:
    """Writes a version the way the exporter does: a dot-named directory, then a rename."""
    temporary = base / f".{version}.tmp"
    shutil.copytree(source, temporary)
    os.rename(temporary, base / str(version))


def test_hot_reload_under_continuous_load_loses_no_request(reload_server, serving_version_dir, small_images):
    versions, failures, stop = [], [], threading.Event()

    def client():
        while not stop.is_set():
            try:
                response = reload_server.predict(_request(small_images["koala.png"]), timeout=30)
                versions.append(response.model_spec.version.value)
            except grpc.RpcError as error:
                failures.append(f"{error.code()}: {error.details()}")

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        _wait_for(lambda: len(versions) >= 5, what="requests on version 1")
        _publish(serving_version_dir, reload_server.base, 2)
        _wait_for(lambda: 2 in versions, what="a response from version 2")
        count = len(versions)
        _wait_for(lambda: len(versions) >= count + 10, what="more requests on version 2")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    switch = versions.index(2)
    assert set(versions[:switch]) == {1} and set(versions[switch + 3:]) == {2}  # Threads may overlap at the switch.
    _wait_for(lambda: _states(reload_server) == {1: (State.END, ""), 2: (State.AVAILABLE, "")}, 20, "v1 unloaded")


def test_corrupt_version_is_reported_and_the_previous_keeps_serving(reload_server, serving_version_dir, small_images):
    broken = reload_server.base / "3"
    (broken / "variables").mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"half a model")
    state, message = _wait_for(
        lambda: _states(reload_server).get(3) if _states(reload_server).get(3, (0,))[0] == State.END else None,
        what="version 3 to fail")
    assert "saved_model.pb" in message or "parse" in message.lower()
    assert _states(reload_server)[2][0] == State.AVAILABLE
    assert reload_server.predict(_request(small_images["koala.png"]), timeout=30).model_spec.version.value == 2
    # The writer finishes the directory in place: the changed files are loaded on the next poll.
    shutil.copytree(serving_version_dir, broken, dirs_exist_ok=True)
    _wait_for(lambda: _states(reload_server).get(3) == (State.AVAILABLE, ""), what="version 3 to load once complete")
    _wait_for(lambda: _states(reload_server)[2][0] == State.END, 20, "v2 unloaded")


def test_directories_that_are_not_versions_are_ignored_and_removal_unloads(reload_server, serving_version_dir,
                                                                          small_images):
    shutil.copytree(serving_version_dir, reload_server.base / "latest")
    shutil.copytree(serving_version_dir, reload_server.base / ".4.tmp")
    time.sleep(1.0)  # Five polls.
    assert set(_states(reload_server)) == {1, 2, 3}
    shutil.rmtree(reload_server.base / "3")  # Latest is now 2 again: it loads, then 3 unloads.
    _wait_for(lambda: _states(reload_server).get(3, (0,))[0] == State.END and
              _states(reload_server)[2][0] == State.AVAILABLE, what="fallback to version 2")
    assert reload_server.predict(_request(small_images["koala.png"]), timeout=30).model_spec.version.value == 2


def test_requests_over_the_size_limit_are_refused(reload_server):
    error = pytest.raises(grpc.RpcError, reload_server.predict, _request(b"x" * 300_000), timeout=30).value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "200000" in error.details()  # gRPC refuses it.
    body = json.dumps({"instances": [{"b64": "A" * 300_000}]}).encode()
    request = urllib.request.Request(reload_server.rest_url + "/v1/models/tiny:predict", data=body)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 413 and "limit" in json.loads(caught.value.read())["error"]


def test_handle_reload_config_adds_and_removes_models(reload_server, small_images):
    request = model_management_pb2.ReloadConfigRequest()
    for name in ("tiny", "copy"):
        entry = request.config.model_config_list.config.add(name=name, base_path=str(reload_server.base),
                                                            model_platform="tensorflow")
        entry.model_version_policy.specific.versions.append(1)
    reload_server.models.HandleReloadConfigRequest(request, timeout=60)
    response = reload_server.predict(_request(small_images["koala.png"], "copy"), timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value) == ("copy", 1)
    assert _wait_for(lambda: _states(reload_server)[2][0] == State.END, what="tiny to move to version 1")
    del request.config.model_config_list.config[1]
    reload_server.models.HandleReloadConfigRequest(request, timeout=60)
    error = pytest.raises(grpc.RpcError, reload_server.predict, _request(small_images["koala.png"], "copy"), timeout=30)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    bad = model_management_pb2.ReloadConfigRequest()
    bad.config.model_config_list.config.add(name="x")
    error = pytest.raises(grpc.RpcError, reload_server.models.HandleReloadConfigRequest, bad, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "base_path" in error.value.details()
