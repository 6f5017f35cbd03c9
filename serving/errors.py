"""Errors the server answers with, and the one place that maps them to gRPC and HTTP status codes.

Bad input is always `impasto.model.errors.InvalidInputError` (INVALID_ARGUMENT,
HTTP 400). The other refusals a client can see each have a type here. Anything
else that escapes a handler is a bug and is answered as INTERNAL / HTTP 500.
"""

import grpc

from impasto.model.errors import InvalidInputError


class ServingError(Exception):
    """A refusal with a definite status code; subclasses set `code`."""

    code = grpc.StatusCode.UNKNOWN


class NotFoundError(ServingError):
    """Unknown model, version, version label or signature."""

    code = grpc.StatusCode.NOT_FOUND


class ResourceExhaustedError(ServingError):
    """A full batching queue or an oversized request."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class RequestTooLargeError(ResourceExhaustedError):
    """A request over the server's size limit (HTTP 413 on REST)."""


class DeadlineExceededError(ServingError):
    """The request's deadline passed before it could run."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnimplementedError(ServingError):
    """An API that impasto does not offer (Classify, Regress, MultiInference)."""

    code = grpc.StatusCode.UNIMPLEMENTED


class UnavailableError(ServingError):
    """The server is shutting down."""

    code = grpc.StatusCode.UNAVAILABLE


class CancelledError(ServingError):
    """The client cancelled the request or went away before it ran."""

    code = grpc.StatusCode.CANCELLED


class FailedPreconditionError(ServingError):
    """A request that cannot apply to the server's current state (e.g. a reload without a config)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class SignatureNotFoundError(FailedPreconditionError):
    """Predict names a signature the version lacks: FAILED_PRECONDITION over gRPC, as TF Serving's Predict says.

    Args:
        signature: the signature name looked up.
    """

    def __init__(self, signature: str):
        super().__init__(f'Serving signature key "{signature}" not found.')
        self.signature = signature


class ModelError(ServingError):
    """A TensorFlow error raised while a model ran, answered with TensorFlow's own status code.

    Args:
        code: the gRPC code of the TensorFlow error (TensorFlow's codes are gRPC's).
        message: the error's useful text.
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def status_code(error: BaseException) -> grpc.StatusCode:
    """The gRPC status code a handler answers `error` with."""
    if isinstance(error, InvalidInputError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(error, ServingError):
        return error.code
    return grpc.StatusCode.INTERNAL


def http_status(error: BaseException) -> int:
    """The HTTP status for `error`: the one TF Serving's REST API uses for its gRPC code."""
    if isinstance(error, RequestTooLargeError):
        return 413
    return _HTTP_STATUS.get(status_code(error), 500)


MAX_GRPC_MESSAGE_CHARS = 1024
"""TF Serving's limit on the message of a gRPC status (grpc_status_util.cc): longer ones are cut and marked."""


def grpc_code(error_code: int) -> grpc.StatusCode:
    """The gRPC status code with TensorFlow's numeric error code (the two share numbers); UNKNOWN if none."""
    return next((code for code in grpc.StatusCode if code.value[0] == error_code), grpc.StatusCode.UNKNOWN)


def truncated(message: str) -> str:
    """`message` cut to MAX_GRPC_MESSAGE_CHARS with "...TRUNCATED" appended, as TF Serving's ToGRPCStatus does,
    so a long error reaches the client instead of breaking its stream on the metadata size limit."""
    if len(message) <= MAX_GRPC_MESSAGE_CHARS:
        return message
    return message[:MAX_GRPC_MESSAGE_CHARS] + "...TRUNCATED"


def error_message(error: BaseException) -> str:
    """The message sent to the client: the error's text, or a generic one for internal errors."""
    if isinstance(error, (InvalidInputError, ServingError)):
        return str(error)
    return f"internal error: {type(error).__name__}: {error}"
