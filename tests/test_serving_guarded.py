"""Faults and security on one real `impasto serve`: mutual TLS on both ports (plain --ssl_*_file flags),
loopback only, paths that try to leave the model root, cancelled gRPC calls and REST clients that hang up, a
burst beyond the queue, and version directories that are symlinked out or deleted while serving.

Batches wait up to 1 s (so requests are in flight long enough to cancel or to delete their version) and at
most one batch may queue. The tests run in file order and share the server.
"""

import base64
import concurrent.futures
import json
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

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

from test_serving_reload import _states, _wait_for

State = get_model_status_pb2.ModelVersionStatus.State


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _make_certificates(folder):
    """A CA, a server certificate (localhost, 127.0.0.1) and a client certificate it signed, and a rogue client."""
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *key, "-days", "1", "-subj", "/CN=impasto test CA", "-keyout", f"{folder}/ca.key",
             "-out", f"{folder}/ca.pem")
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, extra in (("server", ["-extfile", f"{folder}/san.ext"]), ("client", [])):
        _openssl("req", *key, "-subj", f"/CN={name}", "-keyout", f"{folder}/{name}.key", "-out", f"{folder}/{name}.csr")
        _openssl("x509", "-req", "-in", f"{folder}/{name}.csr", "-CA", f"{folder}/ca.pem", "-CAkey", f"{folder}/ca.key",
                 "-CAcreateserial", "-days", "1", "-out", f"{folder}/{name}.pem", *extra)
    _openssl("req", "-x509", *key, "-days", "1", "-subj", "/CN=rogue", "-keyout", f"{folder}/rogue.key",
             "-out", f"{folder}/rogue.pem")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, serving_version_dir, start_server):
    certs, root, outside = (tmp_path_factory.mktemp(name) for name in ("certs", "root", "outside"))
    _make_certificates(certs)
    shutil.copytree(serving_version_dir, root / "tiny" / "1")
    shutil.copytree(serving_version_dir, outside / "tiny" / "1")
    (root / "models.config").write_text(
        f'model_config_list {{ config {{ name: "tiny" base_path: "{root / "tiny"}" }} }}')
    (root / "batching.txt").write_text("max_batch_size { value: 2 }\nbatch_timeout_micros { value: 1000000 }\n"
                                       "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 1 }\n")
    (root / "monitoring.config").write_text('prometheus_config { enable: true path: "/metrics" }\n')
    server = start_server(["--model_config_file", root / "models.config", "--file_system_poll_wait_seconds", "0.2",
                           "--enable_batching", "--batching_parameters_file", root / "batching.txt",
                           "--monitoring_config_file", root / "monitoring.config", "--max_concurrent_requests", "6",
                           "--ssl_cert_file", certs / "server.pem", "--ssl_key_file", certs / "server.key",
                           "--ssl_client_ca_file", certs / "ca.pem"])
    server.root, server.outside, server.certs = root, outside, certs
    server.https = f"https://127.0.0.1:{server.rest_port}"
    with _channel(server) as channel:
        server.predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
        server.models = model_service_pb2_grpc.ModelServiceStub(channel)
        yield server


def _channel(server, client: str | None = "client") -> grpc.Channel:
    certs = server.certs
    key, chain = ((certs / f"{client}.key").read_bytes(), (certs / f"{client}.pem").read_bytes()) if client else (None,
                                                                                                               None)
    credentials = grpc.ssl_channel_credentials((certs / "ca.pem").read_bytes(), key, chain)
    return grpc.secure_channel(f"localhost:{server.port}", credentials)


def _https(server, path: str, body: bytes | None = None, client: str | None = "client") -> tuple[int, str]:
    context = ssl.create_default_context(cafile=str(server.certs / "ca.pem"))
    if client:
        context.load_cert_chain(server.certs / f"{client}.pem", server.certs / f"{client}.key")
    request = urllib.request.Request(server.https + path, data=body)
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _request(image: bytes, model: str = "tiny") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs[keys.IMAGE_BYTES].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
    return request


def _metric(server, pattern: str) -> float:
    match = re.search(pattern + r" (\d+)", _https(server, "/metrics")[1])
    return float(match.group(1)) if match else 0.0


def test_both_ports_listen_on_loopback_only(guarded):
    listening = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":  # LISTEN
                address, port = local.rsplit(":", 1)
                listening.setdefault(int(port, 16), set()).add(address)
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, and as IPv4-mapped IPv6 (gRPC's).
    assert listening[guarded.port] <= loopback and listening[guarded.rest_port] <= loopback


def test_mutual_tls_on_grpc_and_rest_refuses_clients_without_a_signed_certificate(guarded, small_images):
    assert guarded.predict(_request(small_images["koala.png"]), timeout=60).model_spec.version.value == 1
    for client in (None, "rogue"):
        with _channel(guarded, client) as channel, pytest.raises(grpc.RpcError) as caught:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(_request(b""), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, client
    with grpc.insecure_channel(guarded.target) as channel, pytest.raises(grpc.RpcError) as caught:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(_request(b""), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    status, body = _https(guarded, "/v1/models/tiny")
    assert status == 200 and json.loads(body)["model_version_status"][0]["state"] == "AVAILABLE"
    for client in (None, "rogue"):
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            _https(guarded, "/v1/models/tiny", client=client)
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{guarded.rest_port}/v1/models/tiny", timeout=10)


def test_names_and_paths_cannot_leave_the_model_root(guarded, small_images):
    for name in ("../tiny", "/etc/passwd", "tiny/../tiny", f"{guarded.root}/tiny", ""):
        with pytest.raises(grpc.RpcError) as caught:
            guarded.predict(_request(small_images["koala.png"], name), timeout=10)
        expected = grpc.StatusCode.INVALID_ARGUMENT if name == "" else grpc.StatusCode.NOT_FOUND  # As TF Serving.
        assert caught.value.code() == expected, name
    # Unknown models are 404, a path that is no API call 400 (as TF Serving); a label is only ever looked up in
    # the config, and model status does not look at it at all (tiny's own status: 200).
    for path, code in (("/v1/models/..%2Ftiny", 404), ("/v1/models/../tiny", 400),
                       ("/v1/models/%2E%2E%2Ftiny/metadata", 404), ("/v1/models/tiny/labels/..%2F1", 200),
                       ("/v1/models/tiny/labels/..%2F1/metadata", 400), ("/v1/models/tiny/versions/..%2F1", 400)):
        assert _https(guarded, path)[0] == code, path
    (guarded.root / "escape").symlink_to(guarded.outside / "tiny", target_is_directory=True)
    for base_path in (guarded.outside / "tiny", f"{guarded.root}/../{guarded.outside.name}/tiny",
                      guarded.root / "escape", "/"):
        request = model_management_pb2.ReloadConfigRequest()
        request.config.model_config_list.config.add(name="tiny", base_path=str(base_path))
        with pytest.raises(grpc.RpcError) as caught:
            guarded.models.HandleReloadConfigRequest(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, base_path
        assert "outside the model root" in caught.value.details()
    assert guarded.predict(_request(small_images["koala.png"]), timeout=60).model_spec.version.value == 1


def test_a_version_symlinked_out_of_the_base_path_is_refused_and_the_previous_keeps_serving(guarded, small_images):
    link = guarded.root / "tiny" / "2"
    link.symlink_to(guarded.outside / "tiny" / "1", target_is_directory=True)
    try:
        state, message = _wait_for(lambda: _states(guarded).get(2, (0,))[0] == State.END and _states(guarded)[2],
                                   what="version 2 to be refused")
        assert "outside the model's base path" in message
        assert _states(guarded)[1][0] == State.AVAILABLE
        assert guarded.predict(_request(small_images["koala.png"]), timeout=60).model_spec.version.value == 1
    finally:
        link.unlink()


def test_a_cancelled_call_leaves_its_batch_unrun_and_nothing_in_flight(guarded, small_images):
    batches = r'processed_batch_size_count\{model_name="tiny",model_version="1"\}'
    before = _metric(guarded, batches)
    call = guarded.predict.future(_request(small_images["koala.png"]), timeout=60)
    time.sleep(0.3)  # The call now waits for its batch, which closes after 1 s.
    assert call.cancel()
    time.sleep(1.5)
    assert _metric(guarded, batches) == before  # Its batch never ran.
    assert _metric(guarded, ":impasto:serving:requests_in_flight") == 0
    assert _metric(guarded, r'request_count\{model_name="tiny",model_version="1",status="CANCELLED"\}') == 1


def test_a_rest_client_that_hangs_up_leaves_its_batch_unrun_and_nothing_in_flight(guarded, small_images):
    batches = r'processed_batch_size_count\{model_name="tiny",model_version="1"\}'
    cancelled = r'request_count\{model_name="tiny",model_version="1",status="CANCELLED"\}'
    before, cancelled_before = _metric(guarded, batches), _metric(guarded, cancelled)
    body = json.dumps({"instances": [{"b64": base64.b64encode(small_images["koala.png"]).decode()}]}).encode()
    context = ssl.create_default_context(cafile=str(guarded.certs / "ca.pem"))
    context.load_cert_chain(guarded.certs / "client.pem", guarded.certs / "client.key")
    with context.wrap_socket(socket.create_connection(("127.0.0.1", guarded.rest_port)),
                             server_hostname="localhost") as connection:
        connection.sendall(b"POST /v1/models/tiny:predict HTTP/1.0\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body) + body)
        time.sleep(0.3)  # The request now waits for its batch, which closes after 1 s.
    time.sleep(1.5)  # The client has hung up without reading its answer.
    assert _metric(guarded, batches) == before  # Its batch never ran.
    assert _metric(guarded, ":impasto:serving:requests_in_flight") == 0
    assert _metric(guarded, cancelled) == cancelled_before + 1


def test_a_burst_larger_than_the_queue_is_answered_resource_exhausted_and_the_server_lives(guarded, small_images):
    def grpc_call(_):
        try:
            guarded.predict(_request(small_images["koala.png"]), timeout=60)
            return "OK"
        except grpc.RpcError as error:
            return error.code().name

    body = json.dumps({"instances": [{"b64": base64.b64encode(small_images["koala.png"]).decode()}]})

    def rest_call(_):
        return _https(guarded, "/v1/models/tiny:predict", body.encode())[0]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(grpc_call, range(16)))
        statuses = list(pool.map(rest_call, range(16)))
    assert set(codes) == {"OK", "RESOURCE_EXHAUSTED"}, codes
    assert set(statuses) == {200, 429}, statuses
    assert guarded.process.poll() is None
    assert guarded.predict(_request(small_images["koala.png"]), timeout=60).model_spec.version.value == 1
    assert _metric(guarded, ":impasto:serving:requests_in_flight") == 0


def test_a_version_deleted_while_serving_finishes_its_requests_then_unloads(guarded, serving_version_dir,
                                                                              small_images):
    base = guarded.root / "tiny"
    shutil.copytree(serving_version_dir, base / ".3.tmp")
    (base / ".3.tmp").rename(base / "3")
    _wait_for(lambda: _states(guarded).get(3, (0,))[0] == State.AVAILABLE, what="version 3 to load")
    call = guarded.predict.future(_request(small_images["koala.png"]), timeout=60)
    time.sleep(0.3)  # In flight on version 3, waiting for its batch.
    shutil.rmtree(base / "3")
    assert call.result(timeout=60).model_spec.version.value == 3
    _wait_for(lambda: _states(guarded)[3][0] == State.END and _states(guarded)[1][0] == State.AVAILABLE,
              what="version 3 to unload and version 1 to come back")
    assert guarded.predict(_request(small_images["koala.png"]), timeout=60).model_spec.version.value == 1
    assert _metric(guarded, ":impasto:serving:requests_in_flight") == 0
