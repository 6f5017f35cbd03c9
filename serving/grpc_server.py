"""The gRPC front end: tensorflow.serving.PredictionService, tensorflow.serving.ModelService and grpc.health.v1.

Status codes and messages follow tensorflow_model_server, so clients written
for it (including `impasto.serving.client`) work unchanged.
"""

import concurrent.futures
import functools
import logging
import threading

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from impasto.model.errors import InvalidInputError
from impasto.serving import tensors
from impasto.serving.errors import UnimplementedError, error_message, status_code, truncated
from impasto.serving.predictor import Predictor, Target, target_of

LOG = logging.getLogger("impasto.serving")
PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"


def _answers_errors(method):
    """Turns exceptions from a handler into the gRPC status `errors.status_code` gives them, the message cut to
    TF Serving's length limit."""

    @functools.wraps(method)
    def handler(self, request, context):
        try:
            return method(self, request, context)
        except Exception as error:  # noqa: BLE001 - every failure is answered with a status.
            code = status_code(error)
            if code == grpc.StatusCode.INTERNAL:
                LOG.exception("%s failed", method.__name__)
            context.abort(code, truncated(error_message(error)))

    return handler


def _target(request) -> Target:
    """The request's ModelSpec as a `Target`.

    Raises:
        InvalidInputError: the request has no model_spec ("Missing ModelSpec", as TF Serving says).
    """
    if not request.HasField("model_spec"):
        raise InvalidInputError("Missing ModelSpec")
    return target_of(request.model_spec)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata; Classify, Regress and MultiInference are UNIMPLEMENTED."""

    def __init__(self, predictor: Predictor):
        self._predictor = predictor

    @_answers_errors
    def Predict(self, request: predict_pb2.PredictRequest, context) -> predict_pb2.PredictResponse:
        self._predictor.check_size(request.ByteSize())
        cancelled = threading.Event()  # Set when the call ends: answered, cancelled or past its deadline.
        if not context.add_callback(cancelled.set):
            cancelled.set()
        max_bytes = self._predictor.limits.max_request_bytes or None
        prediction = self._predictor.predict(_target(request),
                                             lambda specs: tensors.decode_protos(specs, request.inputs, max_bytes),
                                             request.output_filter, context.time_remaining(), cancelled)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = prediction.model
        response.model_spec.version.value = prediction.version
        response.model_spec.signature_name = prediction.signature
        for key, array in prediction.outputs.items():
            response.outputs[key].CopyFrom(tensors.to_tensor_proto(array))
        return response

    @_answers_errors
    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context):
        return self._predictor.metadata(_target(request), request.metadata_field)

    @_answers_errors
    def Classify(self, request, context):
        raise UnimplementedError("Classify is not supported: impasto models have predict signatures only; use Predict")

    @_answers_errors
    def Regress(self, request, context):
        raise UnimplementedError("Regress is not supported: impasto models have predict signatures only; use Predict")

    @_answers_errors
    def MultiInference(self, request, context):
        raise UnimplementedError("MultiInference is not supported: impasto models have predict signatures only; "
                                 "use Predict")


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus and HandleReloadConfigRequest."""

    def __init__(self, predictor: Predictor):
        self._predictor = predictor

    @_answers_errors
    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context):
        return self._predictor.status(_target(request))

    @_answers_errors
    def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest, context):
        self._predictor.registry.reload_config(request.config)
        return model_management_pb2.ReloadConfigResponse()


def build_server(predictor: Predictor, address: str, max_threads: int,
                 credentials: grpc.ServerCredentials | None = None,
                 max_concurrent: int = 0, socket_path: str | None = None,
                 channel_arguments: list[tuple] = ()) -> tuple[grpc.Server, health.HealthServicer, int]:
    """Builds (but does not start) the gRPC server with all three services.

    Messages over the predictor's request limit are refused by gRPC itself
    (RESOURCE_EXHAUSTED) before they are buffered.

    Args:
        predictor: the shared request path.
        address: "host:port" to listen on.
        max_threads: handler threads (concurrent requests, including those waiting for a batch).
        credentials: TLS credentials; None for plaintext.
        max_concurrent: calls accepted at once, running or queued for a thread; more are answered
            RESOURCE_EXHAUSTED (0: no limit).
        socket_path: also listen on this Unix domain socket (plaintext, like TF Serving's --grpc_socket_path).
        channel_arguments: further gRPC server options (name, value), as --grpc_channel_arguments gives them.

    Returns:
        (server, health servicer, bound port).

    Raises:
        InvalidInputError: the address cannot be bound.
    """
    options = [("grpc.max_receive_message_length", predictor.limits.max_request_bytes or -1),
               ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0), *channel_arguments]
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="grpc"),
                         options=options, maximum_concurrent_rpcs=max_concurrent or None)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(predictor), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(predictor), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        if socket_path:
            server.add_insecure_port(f"unix:{socket_path}")
    except RuntimeError as error:
        raise InvalidInputError(f"cannot listen on {address} for gRPC: {error}") from None
    return server, health_servicer, port


def set_serving(health_servicer: health.HealthServicer, serving: bool) -> None:
    """Marks the server and both TF Serving services healthy or not."""
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for service in ("", PREDICTION_SERVICE, MODEL_SERVICE):
        health_servicer.set(service, status)

