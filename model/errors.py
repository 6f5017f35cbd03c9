"""The one exception type for bad input.

Every entry point maps it once: the CLI to exit code 2, the gRPC server to
INVALID_ARGUMENT, the REST server to HTTP 400. Anything else is a bug.
"""


class InvalidInputError(ValueError):
    """Input that impasto refuses, with a message that names the problem."""


class WeightsError(RuntimeError):
    """Loss-network weights are missing, corrupt or of an unknown layout."""
