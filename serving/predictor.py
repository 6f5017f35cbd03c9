"""The request path shared by the gRPC and REST front ends: resolve, decode, run, time and count."""

import dataclasses
import threading
import time
from collections.abc import Callable

import numpy as np
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from impasto.export import keys
from impasto.model import image_io
from impasto.model.errors import InvalidInputError
from impasto.serving.errors import CancelledError, RequestTooLargeError, status_code
from impasto.serving.limits import Limits
from impasto.serving.metrics import Metrics
from impasto.serving.registry import Registry
from impasto.serving.tensors import Arrays, Specs

UNKNOWN_MODEL = "_unknown"
"""The model label metrics give requests for models that are not configured (so clients cannot grow them)."""


@dataclasses.dataclass(frozen=True)
class Target:
    """What a request addresses: ModelSpec's fields."""

    model: str
    version: int | None = None
    label: str = ""
    signature: str = ""


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A finished request: the version that served it and the outputs."""

    model: str
    version: int
    signature: str
    outputs: Arrays


def target_of(model_spec) -> Target:
    """A tensorflow.serving.ModelSpec as a `Target`."""
    version = model_spec.version.value if model_spec.HasField("version") else None
    return Target(model_spec.name, version, model_spec.version_label, model_spec.signature_name)


class Predictor:
    """Runs predict requests against the registry, with limits and metrics.

    Args:
        registry: the served models.
        metrics: where every request is counted.
        limits: the request limits.
    """

    def __init__(self, registry: Registry, metrics: Metrics, limits: Limits):
        self.registry, self.metrics, self.limits = registry, metrics, limits

    def check_size(self, size_bytes: int) -> None:
        """Refuses a request body larger than the limit.

        Raises:
            RequestTooLargeError: naming both sizes.
        """
        limit = self.limits.max_request_bytes
        if limit and size_bytes > limit:
            raise RequestTooLargeError(f"request of {size_bytes} bytes exceeds this server's limit of {limit} bytes")

    def predict(self, target: Target, decode: Callable[[Specs], Arrays], output_filter=(),
                client_seconds_left: float | None = None, cancelled: threading.Event | None = None) -> Prediction:
        """Resolves the target, decodes the inputs against its signature and runs them.

        Args:
            target: model, version or label, signature.
            decode: turns the request's inputs into arrays, given the signature's input specs.
            output_filter: output keys to return; empty for all.
            client_seconds_left: the client's remaining deadline, if it set one.
            cancelled: set when the client goes away; a request still waiting for its batch is then dropped.

        Returns:
            The prediction.

        Raises:
            NotFoundError, InvalidInputError, ResourceExhaustedError (a full batching queue), DeadlineExceededError,
            CancelledError.
        """
        start = time.monotonic()
        budgets = [s for s in (client_seconds_left, self.limits.timeout_seconds or None) if s is not None]
        deadline = start + min(budgets) if budgets else None
        signature = target.signature or keys.SERVING_DEFAULT
        version, status = None, "OK"
        try:
            with self.metrics.in_flight(), self.registry.servable(target.model, target.version,
                                                                  target.label) as servable:
                version = servable.version
                inputs = decode(servable.input_specs(signature))
                self._check_images(inputs)
                if cancelled is not None and cancelled.is_set():
                    raise CancelledError("the client cancelled the request")
                outputs = servable.predict(signature, inputs, output_filter, deadline, cancelled)
            return Prediction(target.model, version, signature, outputs)
        except Exception as error:
            status = status_code(error).name
            raise
        finally:
            model = target.model if target.model in self.registry.model_names() else UNKNOWN_MODEL
            self.metrics.record_request(model, version, status, time.monotonic() - start)

    def _check_images(self, inputs: Arrays) -> None:
        """Refuses encoded images that are empty, unrecognised or too large, from their headers alone."""
        images = inputs.get(keys.IMAGE_BYTES)
        if not self.limits.max_image_pixels or images is None or images.dtype != object:
            return
        for index, data in enumerate(np.ravel(images)):
            image_io.check_image_header(data, self.limits.max_image_pixels, f"{keys.IMAGE_BYTES}[{index}]")

    def metadata(self, target: Target, fields) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """GetModelMetadata: the version's SignatureDefMap packed in an Any under "signature_def".

        Raises:
            InvalidInputError: no or unsupported metadata fields.
            NotFoundError: unknown model, version or label.
        """
        if not fields:
            raise InvalidInputError("GetModelMetadataRequest must specify at least one metadata_field")
        for field in fields:
            if field != "signature_def":
                raise InvalidInputError(f"Metadata field {field} is not supported")
        with self.registry.servable(target.model, target.version, target.label) as servable:
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = target.model
            response.model_spec.version.value = servable.version
            response.metadata["signature_def"].Pack(servable.signature_def_map)
        return response

    def status(self, target: Target) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatus: every version seen, or the one `target.version` names. A version label is not
        looked at: as in TF Serving, a label without a version reports every version.

        Raises:
            InvalidInputError: no model name.
            NotFoundError: unknown model or version.
        """
        version = target.version
        response = get_model_status_pb2.GetModelStatusResponse()
        for number, state in self.registry.states(target.model, version):
            status = response.model_version_status.add(version=number)
            status.state = get_model_status_pb2.ModelVersionStatus.State.Value(state.state)
            status.status.error_code = state.error_code
            status.status.error_message = state.error_message
        return response
