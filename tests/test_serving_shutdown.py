"""TLS and the SIGTERM drain on a real `impasto serve` whose batches wait 1.5 s (so requests are in flight)."""

import json
import shutil
import signal
import subprocess
import time

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from impasto.export import keys
from impasto.serving.client import StylizeClient, TlsOptions


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, serving_version_dir, start_server):
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
                   check=True, capture_output=True)
    key, cert = (folder / "key.pem").read_text(), (folder / "cert.pem").read_text()
    # Mutual TLS: the self-signed certificate is also the client's, and the CA that verifies it.
    (folder / "ssl.config").write_text(f"server_key: {json.dumps(key)}\nserver_cert: {json.dumps(cert)}\n"
                                       f"custom_ca: {json.dumps(cert)}\nclient_verify: true\n")
    (folder / "batching.txt").write_text("max_batch_size { value: 4 }\nbatch_timeout_micros { value: 1500000 }\n")
    base = folder / "models" / "tiny"
    shutil.copytree(serving_version_dir, base / "1")  # A symlink out of the base path would be refused.
    server = start_server(["--model_base_path", base, "--model_name", "tiny",
                           "--ssl_config_file", folder / "ssl.config",
                           "--enable_batching", "--batching_parameters_file", folder / "batching.txt"], rest=False)
    server.cert, server.key = folder / "cert.pem", folder / "key.pem"
    return server


def _request(image: bytes) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    request.inputs[keys.IMAGE_BYTES].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
    return request


def test_mutual_tls_client_works_and_others_are_refused(tls_server, small_images):
    tls = TlsOptions(root_certificates=tls_server.cert, certificate_chain=tls_server.cert, private_key=tls_server.key)
    with StylizeClient(f"localhost:{tls_server.port}", "tiny", tls=tls, timeout=30) as client:
        assert client.stylize(small_images["koala.png"]).startswith(b"\x89PNG")
    with pytest.raises(grpc.RpcError) as caught:  # Server certificate trusted, but no client certificate.
        StylizeClient(f"localhost:{tls_server.port}", "tiny", tls=TlsOptions(tls_server.cert), retries=0, timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    with grpc.insecure_channel(tls_server.target) as channel, pytest.raises(grpc.RpcError) as caught:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(_request(small_images["koala.png"]),
                                                                           timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_sigterm_finishes_the_request_in_flight_refuses_new_ones_and_exits_0(tls_server, small_images):
    credentials = grpc.ssl_channel_credentials(tls_server.cert.read_bytes(), tls_server.key.read_bytes(),
                                               tls_server.cert.read_bytes())
    with grpc.secure_channel(f"localhost:{tls_server.port}", credentials) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        in_flight = stub.Predict.future(_request(small_images["chelsea.png"]), timeout=60)
        time.sleep(0.5)  # The request now waits in its batch for another second.
        assert not in_flight.done()
        tls_server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(grpc.RpcError):
            stub.Predict(_request(small_images["koala.png"]), timeout=10)
        response = in_flight.result(timeout=60)
    assert response.outputs[keys.STYLIZED_IMAGE_BYTES].string_val[0].startswith(b"\x89PNG")
    assert tls_server.process.wait(timeout=60) == 0
    assert "stopped" in tls_server.log()
