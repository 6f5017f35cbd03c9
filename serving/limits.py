"""`Limits`: what `impasto serve` accepts in one request (no TensorFlow here, so the server's flags parse at once)."""

import dataclasses

from impasto.model import image_io


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-request limits; 0 turns a limit off.

    Attributes:
        max_request_bytes: largest request body / message accepted, and largest decoded input tensor.
        max_batch_size: most examples in one request.
        timeout_seconds: longest a request may wait before it starts running (the client's deadline may be shorter).
        max_image_pixels: refuse encoded images whose header claims more pixels, before the model runs.
    """

    max_request_bytes: int = 256 * 1024 * 1024
    max_batch_size: int = 64
    timeout_seconds: float = 60.0
    max_image_pixels: int = image_io.DEFAULT_MAX_PIXELS
