"""`StylizeClient`: stylizes images through a TensorFlow Serving-compatible server with the stock gRPC stubs.

It uses only what tensorflow_serving.apis defines (PredictionService's Predict
and GetModelMetadata), so it works the same against `impasto serve` and
tensorflow_model_server. It adds per-call deadlines, retries with exponential
backoff on UNAVAILABLE, unlimited message sizes, optional TLS, concurrent calls
through futures, and a check at start that the model offers the signature, input
keys and dtypes it will send.
"""

import concurrent.futures
import dataclasses
import os
import random
import time
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from impasto.export import keys

UNLIMITED_MESSAGES = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


def expected_tensors(signature: str) -> tuple[dict[str, int], dict[str, int]]:
    """({input key: DataType}, {output key: DataType}) the client needs, from `keys.SIGNATURES`;
    a signature name not in the table must look like serving_default."""
    info = keys.SIGNATURES.get(signature, keys.SIGNATURES[keys.SERVING_DEFAULT])

    def dtypes(infos) -> dict[str, int]:
        return {tensor.key: tf.as_dtype(tensor.dtype).as_datatype_enum for tensor in infos}

    return dtypes(info.inputs), dtypes(info.outputs)


class ServerMismatchError(RuntimeError):
    """The server's model lacks what this client needs (model, signature, input or output keys, dtypes)."""


@dataclasses.dataclass(frozen=True)
class TlsOptions:
    """TLS for the channel.

    Attributes:
        root_certificates: PEM file of the CA that signed the server's certificate; None for the system's roots.
        certificate_chain: PEM file of this client's certificate, for servers that verify clients.
        private_key: PEM file of this client's private key.
        server_name: the name to check the server's certificate against, when it differs from the target's host.
    """

    root_certificates: str | os.PathLike | None = None
    certificate_chain: str | os.PathLike | None = None
    private_key: str | os.PathLike | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        """The channel credentials these options describe."""
        def read(path):
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(read(self.root_certificates), read(self.private_key),
                                            read(self.certificate_chain))


@dataclasses.dataclass(frozen=True)
class Result:
    """One Predict answer: the version that served it and its outputs as numpy arrays."""

    version: int
    outputs: dict[str, np.ndarray]


class StylizeClient:
    """A thread-safe client for one model and signature.

    Args:
        target: "host:port" of the server.
        model: the model name.
        signature: the signature to call.
        version: pin a version number (None: the latest).
        version_label: pin a version label instead.
        timeout: seconds allowed for each attempt of each call.
        retries: further attempts after an UNAVAILABLE answer.
        backoff: seconds before the first retry; doubles (with jitter) for each further one, up to 10 s.
        tls: TLS options; None for a plaintext channel.
        max_workers: threads behind `submit`.
        check: call GetModelMetadata now and raise `ServerMismatchError` on any mismatch.

    Raises:
        ServerMismatchError: `check` found the model missing or different from what this client sends.
        grpc.RpcError: the server could not be reached (after the retries).
    """

    def __init__(self, target: str, model: str, signature: str = keys.SERVING_DEFAULT, *, version: int | None = None,
                 version_label: str = "", timeout: float = 30.0, retries: int = 3, backoff: float = 0.1,
                 tls: TlsOptions | None = None, max_workers: int = 8, check: bool = True):
        self.target, self.model, self.signature = target, model, signature
        self._version, self._label = version, version_label
        self._timeout, self._retries, self._backoff = timeout, retries, backoff
        options = list(UNLIMITED_MESSAGES)
        if tls is not None and tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        self._channel = (grpc.secure_channel(target, tls.credentials(), options) if tls is not None
                         else grpc.insecure_channel(target, options))
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="stylize-client")
        if check:
            self.check()

    def check(self):
        """Fetches the model's signatures and compares the one in use with what this client sends.

        Returns:
            The signature's SignatureDef.

        Raises:
            ServerMismatchError: naming every mismatch.
        """
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._fill_spec(request.model_spec)
        request.model_spec.ClearField("signature_name")
        try:
            response = self._call(self._stub.GetModelMetadata, request)
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT,  # An unknown label.
                                grpc.StatusCode.UNIMPLEMENTED):
                raise ServerMismatchError(f"{self.target}: model {self.model!r}: {error.details()}") from None
            raise
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        where = f"{self.target}: model {self.model!r} version {response.model_spec.version.value}"
        if self.signature not in signatures.signature_def:
            offered = ", ".join(sorted(name for name in signatures.signature_def if not name.startswith("__")))
            raise ServerMismatchError(f"{where} has no signature {self.signature!r} (it has: {offered})")
        signature_def = signatures.signature_def[self.signature]
        wanted_inputs, wanted_outputs = expected_tensors(self.signature)
        problems = (_compare("input", signature_def.inputs, wanted_inputs, exact=True)
                    + _compare("output", signature_def.outputs, wanted_outputs, exact=False))
        if problems:
            raise ServerMismatchError(f"{where} signature {self.signature!r}: " + "; ".join(problems))
        return signature_def

    def predict(self, inputs: dict[str, np.ndarray | list]) -> Result:
        """One Predict call with any inputs (converted with tf.make_tensor_proto)."""
        request = predict_pb2.PredictRequest()
        self._fill_spec(request.model_spec)
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        response = self._call(self._stub.Predict, request)
        outputs = {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}
        return Result(response.model_spec.version.value, outputs)

    def stylize_many(self, images: list[bytes], strength: float | None = None,
                     preserve_color: bool | None = None) -> list[bytes]:
        """Stylizes encoded images in one request; returns PNG bytes in the same order.

        Args:
            images: encoded JPEG/PNG/GIF/BMP files, each of any size.
            strength: 0..1 (stylize_controls only; default 1).
            preserve_color: keep the content's colours (stylize_controls only; default False).

        Raises:
            ValueError: controls given for a signature without them, or a tensor signature.
            grpc.RpcError: the server refused or failed (INVALID_ARGUMENT for a bad image).
        """
        if self.signature == keys.STYLIZE_TENSOR:
            raise ValueError("the stylize_tensor signature takes float arrays; use predict()")
        inputs = {keys.IMAGE_BYTES: np.array(images, dtype=object)}
        if self.signature == keys.STYLIZE_CONTROLS:
            inputs[keys.STRENGTH] = np.full(len(images), 1.0 if strength is None else strength, np.float32)
            inputs[keys.PRESERVE_COLOR] = np.full(len(images), bool(preserve_color))
        elif strength is not None or preserve_color is not None:
            raise ValueError(f"strength and preserve_color need the {keys.STYLIZE_CONTROLS} signature, "
                             f"not {self.signature}")
        return list(self.predict(inputs).outputs[keys.STYLIZED_IMAGE_BYTES])

    def stylize(self, image: bytes, **controls) -> bytes:
        """Stylizes one encoded image; returns PNG bytes. See `stylize_many`."""
        return self.stylize_many([image], **controls)[0]

    def submit(self, image: bytes, **controls) -> "concurrent.futures.Future[bytes]":
        """Starts `stylize` in the client's thread pool; the future holds the PNG bytes or the error."""
        return self._executor.submit(self.stylize, image, **controls)

    def close(self) -> None:
        """Waits for submitted calls, then closes the channel."""
        self._executor.shutdown(wait=True)
        self._channel.close()

    def __enter__(self) -> "StylizeClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _fill_spec(self, model_spec) -> None:
        model_spec.name = self.model
        model_spec.signature_name = self.signature
        if self._version is not None:
            model_spec.version.value = self._version
        elif self._label:
            model_spec.version_label = self._label

    def _call(self, method, request):
        """Calls with the per-attempt deadline, retrying UNAVAILABLE with exponential backoff and jitter."""
        delay, attempt = self._backoff, 0
        while True:
            try:
                return method(request, timeout=self._timeout)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or attempt >= self._retries:
                    raise
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay, attempt = min(2 * delay, 10.0), attempt + 1

def _compare(kind: str, actual, wanted: dict[str, int], exact: bool) -> list[str]:
    """Differences between a SignatureDef's tensor map and the keys and dtypes the client needs."""
    problems = []
    for key, dtype in sorted(wanted.items()):
        if key not in actual:
            problems.append(f"missing {kind} {key!r} ({types_pb2.DataType.Name(dtype)})")
        elif actual[key].dtype != dtype:
            problems.append(f"{kind} {key!r} is {types_pb2.DataType.Name(actual[key].dtype)}, "
                            f"expected {types_pb2.DataType.Name(dtype)}")
    if exact:
        problems += [f"unexpected {kind} {key!r} that this client does not send"
                     for key in sorted(set(actual) - set(wanted))]
    return problems
