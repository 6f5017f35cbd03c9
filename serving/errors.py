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


def error_message(error: BaseException) -> str:
    """The message sent to the client: the error's text, or a generic one for internal errors."""
    if isinstance(error, (InvalidInputError, ServingError)):
        return str(error)
    return f"internal error: {type(error).__name__}: {error}"
