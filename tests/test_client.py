"""StylizeClient against the real `impasto serve` (tiny_server) and, for retries, a scripted gRPC server."""

import concurrent.futures
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from impasto.export import keys
from impasto.model import image_io
from impasto.serving.client import ServerMismatchError, StylizeClient
from impasto.testing import free_port


@pytest.fixture(scope="module")
def client(tiny_server):
    with StylizeClient(tiny_server.target, "tiny", timeout=30) as client:
        yield client


def _shape(png: bytes):
    return image_io.decode_image_bytes(png).shape


def test_stylize_one_many_and_concurrently(client, small_images):
    names = ["chelsea.png", "coffee.png", "rocket.png", "koala.png"]
    assert _shape(client.stylize(small_images["chelsea.png"])) == _shape(small_images["chelsea.png"])
    outputs = client.stylize_many([small_images[name] for name in names])
    assert [_shape(png) for png in outputs] == [_shape(small_images[name]) for name in names]
    futures = [client.submit(small_images[name]) for name in names * 2]
    assert [_shape(f.result(timeout=60)) for f in futures] == [_shape(small_images[name]) for name in names * 2]


def test_bad_image_raises_invalid_argument_and_others_still_complete(client, small_images, data_dir):
    bad = client.submit((data_dir / "edge_random_bytes.jpg").read_bytes())
    good = client.submit(small_images["koala.png"])
    with pytest.raises(grpc.RpcError) as caught:
        bad.result(timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert good.result(timeout=60).startswith(b"\x89PNG")


def test_version_pin_label_and_controls(tiny_server, small_images):
    image = small_images["coffee.png"]
    with StylizeClient(tiny_server.target, "tiny", version=1) as pinned:
        assert pinned.predict({keys.IMAGE_BYTES: np.array([image], dtype=object)}).version == 1
    with StylizeClient(tiny_server.target, "tiny", version_label="canary") as labelled:
        assert labelled.predict({keys.IMAGE_BYTES: np.array([image], dtype=object)}).version == 2
    with StylizeClient(tiny_server.target, "tiny", keys.STYLIZE_CONTROLS) as controls:
        same = image_io.decode_image_bytes(controls.stylize(image, strength=0.0))
        assert np.abs(same - image_io.decode_image_bytes(image)).max() <= 1
    with StylizeClient(tiny_server.target, "tiny") as plain, pytest.raises(ValueError, match="stylize_controls"):
        plain.stylize(image, strength=0.5)


def test_metadata_check_names_every_mismatch(tiny_server):
    with pytest.raises(ServerMismatchError, match=r"no signature 'nope' \(it has: .*stylize_controls"):
        StylizeClient(tiny_server.target, "tiny", "nope")
    with pytest.raises(ServerMismatchError, match="Servable not found"):
        StylizeClient(tiny_server.target, "missing")
    with pytest.raises(ServerMismatchError, match="Unrecognized servable version label: beta"):
        StylizeClient(tiny_server.target, "tiny", version_label="beta")
    with pytest.raises(ServerMismatchError) as caught:
        StylizeClient(tiny_server.target, "wrong")
    message = str(caught.value)
    assert "missing input 'image_bytes' (DT_STRING)" in message
    assert "unexpected input 'images'" in message
    assert "missing output 'stylized_image_bytes'" in message


class _Scripted(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers each Predict with the next scripted status code (then OK), echoing the image bytes."""

    def __init__(self, codes, delay=0.0):
        self.codes, self.delay, self.calls, self.lock = list(codes), delay, 0, threading.Lock()

    def Predict(self, request, context):
        with self.lock:
            self.calls += 1
            code = self.codes.pop(0) if self.codes else None
        time.sleep(self.delay)
        if code is not None:
            context.abort(code, f"scripted {code.name}")
        response = predict_pb2.PredictResponse()
        response.outputs[keys.STYLIZED_IMAGE_BYTES].CopyFrom(request.inputs[keys.IMAGE_BYTES])
        return response


@pytest.fixture
def scripted():
    servers = []

    def start(codes, delay=0.0):
        servicer = _Scripted(codes, delay)
        server = grpc.server(concurrent.futures.ThreadPoolExecutor(4))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return servicer, f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(0)


def test_retries_unavailable_with_backoff_but_not_other_errors(scripted):
    servicer, target = scripted([grpc.StatusCode.UNAVAILABLE] * 2)
    with StylizeClient(target, "m", retries=3, backoff=0.05, check=False) as client:
        start = time.monotonic()
        assert client.stylize(b"data") == b"data"
        assert servicer.calls == 3
        assert time.monotonic() - start >= 0.05 * 0.5 + 0.1 * 0.5
    servicer, target = scripted([grpc.StatusCode.UNAVAILABLE] * 5)
    with StylizeClient(target, "m", retries=1, backoff=0.01, check=False) as client, \
            pytest.raises(grpc.RpcError) as caught:
        client.stylize(b"data")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and servicer.calls == 2
    servicer, target = scripted([grpc.StatusCode.INVALID_ARGUMENT])
    with StylizeClient(target, "m", retries=3, backoff=0.01, check=False) as client, \
            pytest.raises(grpc.RpcError) as caught:
        client.stylize(b"data")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and servicer.calls == 1


def test_per_call_deadline(scripted):
    servicer, target = scripted([], delay=1.0)
    with StylizeClient(target, "m", timeout=0.2, check=False) as client, pytest.raises(grpc.RpcError) as caught:
        client.stylize(b"data")
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_unreachable_server_fails_after_retries():
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        StylizeClient(f"127.0.0.1:{free_port()}", "m", retries=2, backoff=0.1, timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - start >= 0.1 * 0.5 + 0.2 * 0.5


def test_tensor_signature_through_predict(tiny_server, small_images):
    pixels = image_io.decode_image_bytes(small_images["koala.png"])[None]
    with StylizeClient(tiny_server.target, "tiny", keys.STYLIZE_TENSOR) as client:
        result = client.predict({keys.IMAGES: pixels})
        with pytest.raises(ValueError, match="predict"):
            client.stylize(small_images["koala.png"])
    assert result.outputs[keys.STYLIZED_IMAGES].shape == pixels.shape
    assert result.outputs[keys.STYLIZED_IMAGES].dtype == tf.float32.as_numpy_dtype
