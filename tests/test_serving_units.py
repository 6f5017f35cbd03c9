"""In-process tests of the serving building blocks: batching, version policies, configs, metrics, tensors."""

import base64
import json
import socket
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorflow_serving.config import file_system_storage_path_source_pb2 as fs_pb2

from impasto.export import tfserving_protos
from impasto.export.tfserving_config import BatchingConfig
from impasto.model.errors import InvalidInputError
from impasto.serving import config, registry, tensors
from impasto.serving.batching import Batcher
from impasto.serving.errors import (
    CancelledError,
    DeadlineExceededError,
    RequestTooLargeError,
    ResourceExhaustedError,
    http_status,
)
from impasto.serving.metrics import Metrics
from impasto.serving.rest_server import ClientGone


def _lengths(signature, inputs):
    """A stand-in model: the length of each string, so every output is traceable to its input."""
    return {"length": np.array([len(item) for item in inputs["data"]], np.int64)}


def _submit_concurrently(batcher, requests, deadline=None):
    """Submits every request from its own thread at once; returns results (or exceptions) in order."""
    results = [None] * len(requests)

    def one(index):
        try:
            results[index] = batcher.submit("sig", requests[index], len(requests[index]["data"]), deadline)
        except Exception as error:  # noqa: BLE001 - returned for the test to inspect.
            results[index] = error

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@settings(max_examples=15, deadline=None)
@given(st.lists(st.lists(st.binary(min_size=1, max_size=12), min_size=1, max_size=3), min_size=1, max_size=8))
def test_batcher_splits_combined_outputs_back_to_each_request(requests_data):
    batch_sizes = []
    batcher = Batcher(lambda s, i: (batch_sizes.append(len(i["data"])), _lengths(s, i))[1],
                      BatchingConfig(max_batch_size=8, batch_timeout_micros=20000, num_batch_threads=2),
                      on_batch=lambda size: None)
    requests = [{"data": np.array(items, dtype=object)} for items in requests_data]
    try:
        results = _submit_concurrently(batcher, requests)
    finally:
        batcher.close()
    for items, result in zip(requests_data, results):
        assert result["length"].tolist() == [len(item) for item in items]
    assert sum(batch_sizes) == sum(len(items) for items in requests_data)
    assert max(batch_sizes) <= 8


def test_batcher_combines_concurrent_requests_into_fewer_calls():
    calls = []
    batcher = Batcher(lambda s, i: (calls.append(len(i["data"])), _lengths(s, i))[1],
                      BatchingConfig(max_batch_size=16, batch_timeout_micros=200_000, num_batch_threads=1))
    requests = [{"data": np.array([b"x" * (n + 1)], dtype=object)} for n in range(6)]
    results = _submit_concurrently(batcher, requests)
    batcher.close()
    assert [r["length"].tolist() for r in results] == [[n + 1] for n in range(6)]
    assert len(calls) < 6 and sum(calls) == 6


def test_batcher_keeps_float_tensors_of_different_shapes_apart():
    shapes = []
    batcher = Batcher(lambda s, i: (shapes.append(i["x"].shape), {"y": i["x"] * 2})[1],
                      BatchingConfig(max_batch_size=8, batch_timeout_micros=100_000, num_batch_threads=1))
    requests = [{"x": np.ones((1, 4 + (n % 2), 4, 3), np.float32) * n} for n in range(4)]
    results = [None] * 4

    def one(n):
        results[n] = batcher.submit("sig", requests[n], 1)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()
    for n in range(4):
        np.testing.assert_array_equal(results[n]["y"], requests[n]["x"] * 2)
    assert all(shape[0] <= 2 for shape in shapes) and {shape[1] for shape in shapes} == {4, 5}


def test_batcher_fails_only_the_request_with_bad_input():
    def run(signature, inputs):
        if any(item == b"bad" for item in inputs["data"]):
            raise InvalidInputError("corrupt image")
        return _lengths(signature, inputs)

    batcher = Batcher(run, BatchingConfig(max_batch_size=8, batch_timeout_micros=100_000, num_batch_threads=1))
    requests = [{"data": np.array([item], dtype=object)} for item in (b"good", b"bad", b"fine!")]
    results = _submit_concurrently(batcher, requests)
    batcher.close()
    assert results[0]["length"].tolist() == [4]
    assert isinstance(results[1], InvalidInputError)
    assert results[2]["length"].tolist() == [5]


def test_batcher_refuses_when_the_queue_is_full_and_when_a_request_is_too_big():
    release = threading.Event()
    batcher = Batcher(lambda s, i: (release.wait(10), _lengths(s, i))[1],
                      BatchingConfig(max_batch_size=1, batch_timeout_micros=0, num_batch_threads=1,
                                      max_enqueued_batches=1))
    first = threading.Thread(target=batcher.submit, args=("sig", {"data": np.array([b"a"], dtype=object)}, 1))
    first.start()
    time.sleep(0.2)  # The first request is running; the next one fills the queue.
    second = threading.Thread(target=batcher.submit, args=("sig", {"data": np.array([b"b"], dtype=object)}, 1))
    second.start()
    time.sleep(0.2)
    with pytest.raises(ResourceExhaustedError, match="queue .* is full"):
        batcher.submit("sig", {"data": np.array([b"c"], dtype=object)}, 1)
    with pytest.raises(InvalidInputError, match="Task size 2 is larger than maximum input batch size 1"):
        batcher.submit("sig", {"data": np.array([b"c", b"d"], dtype=object)}, 2)
    release.set()
    first.join()
    second.join()
    batcher.close()


def test_batcher_drops_requests_whose_deadline_passed_while_queued():
    batcher = Batcher(_lengths, BatchingConfig(max_batch_size=4, batch_timeout_micros=300_000, num_batch_threads=1))
    with pytest.raises(DeadlineExceededError):
        batcher.submit("sig", {"data": np.array([b"a"], dtype=object)}, 1, deadline=time.monotonic() + 0.05)
    batcher.close()


def test_batcher_drops_a_cancelled_request_and_runs_the_rest_of_its_batch_without_it():
    sizes, results, cancelled = [], {}, threading.Event()
    batcher = Batcher(lambda s, i: (sizes.append(len(i["data"])), _lengths(s, i))[1],
                      BatchingConfig(max_batch_size=8, batch_timeout_micros=400_000, num_batch_threads=1))

    def one(name: str, event) -> None:
        try:
            results[name] = batcher.submit("sig", {"data": np.array([name.encode()], dtype=object)}, 1, None, event)
        except Exception as error:  # noqa: BLE001 - inspected below.
            results[name] = error

    threads = [threading.Thread(target=one, args=("gone", cancelled)),
               threading.Thread(target=one, args=("kept!", None))]
    for thread in threads:
        thread.start()
    time.sleep(0.1)  # Both wait in the open batch.
    cancelled.set()
    for thread in threads:
        thread.join()
    batcher.close()
    assert isinstance(results["gone"], CancelledError)
    assert results["kept!"]["length"].tolist() == [5] and sizes == [1]


def test_client_gone_sets_itself_when_the_peer_hangs_up_not_when_it_sends_more():
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        gone = ClientGone(server_side)
        client_side.sendall(b"late bytes")  # Readable, but the client is still there.
        assert not gone.is_set()
        client_side.shutdown(socket.SHUT_WR)
        assert gone.is_set() and gone.is_set()


def test_version_dirs_are_integer_names_only(tmp_path):
    for name in ("1", "7", "12", ".13.tmp", "latest", "0", "3a"):
        (tmp_path / name).mkdir()
    (tmp_path / "20").write_text("a file, not a version")
    assert sorted(registry._version_dirs(str(tmp_path))) == [1, 7, 12]
    assert registry._version_dirs(str(tmp_path / "missing")) is None


class Unloadable:
    """Stands in for a loaded version where only the registry's scheduling is under test."""

    def unload(self):
        pass


def _overlapping_loads(tmp_path, load_threads, first_load_threads):
    """Polls a registry of three models twice (start-up, then a new version of each); returns the most loads
    that ran at once in each poll."""
    from tensorflow_serving.config import model_server_config_pb2

    server_config = model_server_config_pb2.ModelServerConfig()
    for name in ("a", "b", "c"):
        (tmp_path / name / "1").mkdir(parents=True)
        entry = server_config.model_config_list.config.add()
        entry.name, entry.base_path, entry.model_platform = name, str(tmp_path / name), "tensorflow"
    lock, running, most = threading.Lock(), [0], []

    def slow_loader(name, version, path):
        with lock:
            running[0] += 1
            most[-1] = max(most[-1], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1
        return Unloadable()

    served = registry.Registry(server_config, slow_loader, tmp_path, load_threads, first_load_threads)
    for version in ("1", "2"):
        for name in ("a", "b", "c"):
            (tmp_path / name / version).mkdir(exist_ok=True)
        most.append(0)
        served.poll()
    return most


def test_models_load_side_by_side_at_start_up_then_as_num_load_threads_says(tmp_path):
    assert _overlapping_loads(tmp_path / "serial", 0, 8) == [3, 1]
    assert _overlapping_loads(tmp_path / "two", 2, 8) == [3, 2]
    assert _overlapping_loads(tmp_path / "none", 0, 0) == [1, 1]
    assert registry.initial_load_threads() >= 4


def test_version_policies():
    versions = [1, 2, 5, 9]
    policy = fs_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy()
    assert registry._apply_policy(policy, versions) == {9}
    policy.latest.num_versions = 2
    assert registry._apply_policy(policy, versions) == {5, 9}
    policy.all.SetInParent()
    assert registry._apply_policy(policy, versions) == {1, 2, 5, 9}
    policy.specific.versions.extend([2, 3])
    assert registry._apply_policy(policy, versions) == {2}


def test_config_files_parse_like_tf_serving(tmp_path):
    batching = tmp_path / "batching_parameters.txt"
    batching.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 500 }\n"
                        "# comment\nnum_batch_threads { value: 3 }\n")
    expected = BatchingConfig(8, 500, 3, BatchingConfig.max_enqueued_batches)
    assert BatchingConfig.from_file(batching) == expected
    batching.write_text("max_batch_sise { value: 8 }\n")
    with pytest.raises(InvalidInputError, match="max_batch_sise"):
        BatchingConfig.from_file(batching)
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true, path: "/metrics" }\n')
    assert config.prometheus_path(monitoring) == "/metrics"
    monitoring.write_text("prometheus_config { enable: false }\n")
    assert config.prometheus_path(monitoring) is None
    models = tmp_path / "models.config"
    models.write_text('model_config_list { config { name: "a" base_path: "/x" } config { name: "a" base_path: "/y" } }')
    with pytest.raises(InvalidInputError, match="multiple times"):
        config.check_model_server_config(tfserving_protos.parse_text_proto(models, "ModelServerConfig"))


def test_metrics_render_prometheus_text():
    metrics = Metrics()
    metrics.record_request("tiny", 2, "OK", 0.003)
    metrics.record_request("tiny", 2, "OK", 0.2)
    metrics.record_request("ti\"ny", None, "NOT_FOUND", 0.0001)
    metrics.record_batch("tiny", 2, 3)
    text = metrics.render()
    assert ':tensorflow:serving:request_count{model_name="tiny",model_version="2",status="OK"} 2' in text
    assert 'model_name="ti\\"ny",model_version="",status="NOT_FOUND"} 1' in text
    assert ('request_latency_bucket{model_name="tiny",model_version="2",status="OK",le="5000"} 1' in text)
    assert ('request_latency_bucket{model_name="tiny",model_version="2",status="OK",le="+Inf"} 2' in text)
    assert 'processed_batch_size_sum{model_name="tiny",model_version="2"} 3' in text
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text


def test_tensor_checks_use_tf_serving_messages():
    specs = {"image_bytes": tf.TensorSpec([None], tf.string), "strength": tf.TensorSpec([None], tf.float32)}
    with pytest.raises(InvalidInputError, match=r"Sent extra: \{extra\}. Missing but required: \{strength\}"):
        tensors.check_inputs(specs, {"image_bytes": np.array([b"a"], dtype=object), "extra": np.zeros(1)})
    with pytest.raises(InvalidInputError, match="different batch sizes"):
        tensors.check_inputs(specs, {"image_bytes": np.array([b"a"], dtype=object), "strength": np.zeros(2)})
    with pytest.raises(InvalidInputError, match="empty batch"):
        tensors.check_inputs(specs, {"image_bytes": np.array([], dtype=object), "strength": np.zeros(0)})
    with pytest.raises(InvalidInputError, match="limit of 1 per request"):
        tensors.check_inputs(specs, {"image_bytes": np.array([b"a", b"b"], dtype=object), "strength": np.zeros(2)}, 1)
    with pytest.raises(InvalidInputError, match=r"has shape \[1, 1\]"):
        tensors.check_inputs(specs, {"image_bytes": np.array([[b"a"]], dtype=object), "strength": np.zeros(1)})
    proto = tf.make_tensor_proto([1.0])
    with pytest.raises(InvalidInputError, match=r"Expects arg\[0\] to be string but float is provided"):
        tensors.check_proto_dtypes(specs, {"image_bytes": proto})


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=5))
def test_json_b64_round_trip(values):
    spec = tf.TensorSpec([None], tf.string)
    encoded = [{"b64": base64.b64encode(value).decode()} for value in values]
    array = tensors.from_json("image_bytes", encoded, spec)
    assert array.tolist() == values
    assert tensors.to_json("stylized_image_bytes", array) == encoded


def test_json_inputs_are_checked_against_the_signature_dtype():
    with pytest.raises(InvalidInputError, match="invalid base64"):
        tensors.from_json("image_bytes", [{"b64": "not base64!"}], tf.TensorSpec([None], tf.string))
    with pytest.raises(InvalidInputError, match='JSON Value: "0.5" Type: String is not of expected type: float'):
        tensors.from_json("strength", ["0.5"], tf.TensorSpec([None], tf.float32))
    with pytest.raises(InvalidInputError, match="JSON Value: 1 Type: Number is not of expected type: bool"):
        tensors.from_json("preserve_color", [1], tf.TensorSpec([None], tf.bool))
    with pytest.raises(InvalidInputError, match="JSON Value: true Type: True is not of expected type: float"):
        tensors.from_json("strength", [True], tf.TensorSpec([None], tf.float32))
    assert tensors.from_json("preserve_color", [True, False], tf.TensorSpec([None], tf.bool)).tolist() == [True, False]


def test_error_mapping_to_http():
    assert http_status(InvalidInputError("x")) == 400
    assert http_status(RequestTooLargeError("x")) == 413
    assert http_status(ResourceExhaustedError("x")) == 429
    assert http_status(RuntimeError("x")) == 500


def test_server_reads_the_files_impasto_export_writes(tmp_path):
    from impasto.export import tfserving_config

    (tmp_path / "starry" / "3").mkdir(parents=True)
    (tmp_path / "starry" / "3" / "saved_model.pb").write_bytes(b"")
    batching = tfserving_config.BatchingConfig(max_batch_size=4, num_batch_threads=1)
    tfserving_config.write_server_files(tmp_path, batching)
    models = tfserving_protos.parse_text_proto(tmp_path / tfserving_config.MODELS_CONFIG, "ModelServerConfig")
    config.check_model_server_config(models)
    assert [(m.name, m.base_path) for m in models.model_config_list.config] == [("starry", str(tmp_path / "starry"))]
    options = BatchingConfig.from_file(tmp_path / tfserving_config.BATCHING_PARAMETERS)
    assert (options.max_batch_size, options.num_batch_threads) == (4, 1)
    assert options == batching  # One config: what export writes is what the server reads.
    tfserving_config.write_server_files(tmp_path, tfserving_config.EXPORT_BATCHING)
    assert BatchingConfig.from_file(tmp_path / tfserving_config.BATCHING_PARAMETERS) == tfserving_config.EXPORT_BATCHING
    assert config.prometheus_path(tmp_path / tfserving_config.MONITORING_CONFIG) == tfserving_config.PROMETHEUS_PATH


@pytest.mark.parametrize("array", [np.array(3.0, np.float32), np.arange(6, dtype=np.float32).reshape(2, 3),
                                   np.array([1, -2], np.int32), np.array([[7]], np.int64), np.array([True, False]),
                                   np.array([b"a", b"\xff"], dtype=object), np.array([0.25], np.float64),
                                   np.array([1.5], np.float16)])
def test_output_protos_use_the_typed_fields_and_read_back_equal(array):
    proto = tensors.to_tensor_proto(array)
    assert proto.HasField("tensor_shape")
    assert not proto.tensor_content  # Values in float_val, int_val, ..., as TF Serving's AsProtoField writes them.
    np.testing.assert_array_equal(tf.make_ndarray(proto), array)
    assert tf.make_ndarray(proto).shape == array.shape


def test_float32_json_is_the_shortest_text_that_reads_back_the_same():
    values = np.array([0.1, 2.5, 1e-8, 3.0, 16777217.0], np.float32)
    assert json.dumps(tensors.to_json("y", values)) == "[0.1, 2.5, 1e-08, 3.0, 16777216.0]"
    np.testing.assert_array_equal(np.array(tensors.to_json("y", values), np.float32), values)


def test_grpc_channel_arguments_parse_like_tensorflow_model_server():
    assert config.parse_channel_arguments("grpc.max_connection_age_ms=2000, grpc.lb_policy_name=grpclb") == [
        ("grpc.max_connection_age_ms", 2000), ("grpc.lb_policy_name", "grpclb")]
    assert config.parse_channel_arguments("") == []
    with pytest.raises(InvalidInputError, match="not name=value"):
        config.parse_channel_arguments("grpc.max_connection_age_ms")
