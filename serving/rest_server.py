"""TF Serving's REST API on the standard library's ThreadingHTTPServer.

    POST /v1/models/NAME[/versions/N | /labels/L]:predict   {"instances": [...]} or {"inputs": ...}
    GET  /v1/models/NAME[/versions/N | /labels/L]           model status
    GET  /v1/models/NAME[/versions/N | /labels/L]/metadata  signature defs
    GET  <prometheus path>                                  metrics, when a monitoring config enables them

String values travel as {"b64": "..."}; string outputs whose key ends in
"_bytes" come back the same way. Errors are {"error": "..."} with the HTTP
status TF Serving gives the gRPC code (400 bad input, an unknown label or
signature, or a malformed path under /v1/; 404 an unknown model or version, or
a path outside /v1/; ...), in TF Serving's words (rapidjson's for bad JSON).
:classify and :regress are answered 501 (impasto serve offers Predict only).

Request bodies over the size limit are answered 413 without being kept; a
:predict beyond the concurrency limit is answered 429; a connection idle for
`IDLE_TIMEOUT_SECONDS` is closed. A client that closes its connection (or shuts
down its sending side) while its :predict waits for a batch is noticed within
`batching.CANCEL_POLL_SECONDS`: its request leaves the queue unrun and is
counted CANCELLED (HTTP 499), as a cancelled gRPC call is. With an
`ssl.SSLContext` the port speaks HTTPS only, verifying client certificates as
the context says.
"""

import http.server
import json
import logging
import re
import select
import socket
import ssl
import threading

from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from impasto.model.errors import InvalidInputError
from impasto.serving import tensors
from impasto.serving.errors import (
    NotFoundError,
    ResourceExhaustedError,
    SignatureNotFoundError,
    UnimplementedError,
    error_message,
    http_status,
)
from impasto.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from impasto.serving.predictor import Predictor, Target

LOG = logging.getLogger("impasto.serving")
_API_PREFIX = "/v1/"
"""Paths under it are API calls (TF Serving's kPathRegex): one that does not parse is a malformed request (400)."""
_ROUTE = re.compile(r"^/v1/models(?:/(?P<model>[^/:]+))?(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                    r"(?P<action>:predict|:classify|:regress|/metadata)?$", re.IGNORECASE)
_MAX_VERSION = 2**63 - 1
IDLE_TIMEOUT_SECONDS = 60.0
"""A connection that sends nothing for this long is closed (slow or stalled clients cannot hold a thread)."""
_HANG_UP = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR
"""poll() events of a peer that closed or shut down its side (POLLRDHUP: Linux; elsewhere only a full hang-up)."""


class ClientGone(threading.Event):
    """The `cancelled` event of one REST request: it sets itself when the client hangs up.

    Each connection carries one request (HTTP/1.0), so once its body is read the client
    has nothing more to send: a FIN or a reset on the socket means no one waits for the
    answer. The batcher and the predictor only ever call `is_set()`, which looks at the
    socket (without reading from it) each time it is asked, so no thread watches it.

    Args:
        connection: the request's socket (plain or TLS; only its file descriptor is polled).
    """

    def __init__(self, connection: socket.socket):
        super().__init__()
        self._fd = connection.fileno()

    def is_set(self) -> bool:
        """True once the client has closed its side of the connection."""
        if not super().is_set():
            poller = select.poll()  # One per call: a poll object must not be polled from two threads at once.
            poller.register(self._fd, _HANG_UP)
            if poller.poll(0):
                self.set()
        return super().is_set()


class RestServer(http.server.ThreadingHTTPServer):
    """The HTTP(S) server; `shutdown()` then `server_close()` waits for requests in flight.

    Args:
        address: (host, port).
        predictor: the shared request path.
        metrics_path: where to serve Prometheus metrics; None for nowhere.
        ssl_context: serve HTTPS with it; None for plain HTTP.
        max_concurrent: :predict requests handled at once; more are answered 429 (0: no limit).
    """

    daemon_threads = False  # server_close() joins the request threads: in-flight requests finish.
    request_queue_size = socket.SOMAXCONN
    """The listen backlog: socketserver's default of 5 overflows when a few dozen clients connect at once (the
    kernel then drops or resets their connections); gRPC's listener uses SOMAXCONN too."""

    def __init__(self, address: tuple[str, int], predictor: Predictor, metrics_path: str | None,
                 ssl_context: ssl.SSLContext | None = None, max_concurrent: int = 0):
        self.predictor, self.metrics_path = predictor, metrics_path
        self.slots = threading.BoundedSemaphore(max_concurrent) if max_concurrent else None
        super().__init__(address, _Handler)
        if ssl_context is not None:  # The handshake runs in each request's thread, not in the accept loop.
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def start(self) -> threading.Thread:
        """Serves in a background thread."""
        thread = threading.Thread(target=self.serve_forever, name="rest", daemon=True)
        thread.start()
        return thread

    def handle_error(self, request, client_address) -> None:
        """A connection that fails (a refused TLS handshake, a client that went away) is logged, not printed."""
        LOG.debug("rest: connection from %s failed", client_address[0], exc_info=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: RestServer
    protocol_version = "HTTP/1.0"  # One request per connection: nothing idles when the server drains.
    timeout = IDLE_TIMEOUT_SECONDS

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name.
        LOG.debug("rest: " + format, *args)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if self.server.metrics_path and path == self.server.metrics_path:
            self._send(200, self.server.predictor.metrics.render().encode(), METRICS_CONTENT_TYPE)
            return
        self._route("GET", path)

    def do_POST(self) -> None:
        self._route("POST", self.path.split("?", 1)[0])

    def _route(self, method: str, path: str) -> None:
        try:
            target, action = _parse_path(method, path)
            if action is None:
                body = json_format.MessageToDict(self.server.predictor.status(target), preserving_proto_field_name=True,
                                                 always_print_fields_with_no_presence=True)
            elif action == "/metadata":
                body = metadata_json(self.server.predictor.metadata(target, ["signature_def"]))
            elif action == ":predict":
                body = self._predict(target)
            else:
                raise UnimplementedError(f"{action[1:]} is not supported: impasto serve offers the Predict API only; "
                                         "use :predict")
        except Exception as error:  # noqa: BLE001 - every failure is answered with a status.
            if http_status(error) == 500:
                LOG.exception("REST %s %s failed", method, path)
            self._send_json(http_status(error), {"error": error_message(error)})
            return
        self._send_json(200, body)

    def _predict(self, target: Target) -> dict:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise InvalidInputError("a :predict request needs a Content-Length header")
        slots = self.server.slots
        try:
            self.server.predictor.check_size(int(length))
            if slots is not None and not slots.acquire(blocking=False):
                raise ResourceExhaustedError("too many concurrent requests; retry later")
        except ResourceExhaustedError:
            self._discard(int(length))  # Read (without keeping) so the client gets the answer, not a reset.
            raise
        try:
            try:
                body = self.rfile.read(int(length))
            except TimeoutError:
                raise InvalidInputError(f"the request body did not arrive within {self.timeout:g} s") from None
            values, row_format, signature = parse_predict_body(body)
            target = Target(target.model, target.version, target.label, signature)
            try:
                prediction = self.server.predictor.predict(
                    target, lambda specs: decode_json_inputs(values, specs, row_format),
                    cancelled=ClientGone(self.connection))
            except SignatureNotFoundError as error:  # REST looks the signature up itself, in its own words.
                raise InvalidInputError(f'Serving signature name: "{error.signature}" not found in signature '
                                        "def") from None
        finally:
            if slots is not None:
                slots.release()
        return predict_json(prediction.outputs, row_format)

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                return
            length -= len(chunk)

    def _send_json(self, status: int, body: dict) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _parse_path(method: str, path: str) -> tuple[Target, str | None]:
    """(target, action) of an API path; action is ":predict", ":classify", ":regress", "/metadata" or None (status).

    Raises:
        NotFoundError: not an API path (outside /v1/).
        InvalidInputError: an API path that does not parse or does not fit the method, in TF Serving's words.
    """
    if not path.startswith(_API_PREFIX):
        raise NotFoundError(f"Not found: {method} {path}")
    match = _ROUTE.match(path)
    action = match and (match["action"] or "").lower() or None
    if match is None or (method == "GET") != (action in (None, "/metadata")):
        raise InvalidInputError(f"Malformed request: {method} {path}")
    if not match["model"]:
        raise InvalidInputError("Missing model name in request.")
    version = int(match["version"]) if match["version"] else None
    if version is not None and version > _MAX_VERSION:
        raise InvalidInputError(f"Failed to convert version: {match['version']} to numeric.")
    return Target(match["model"], version, match["label"] or ""), action


_RAPIDJSON_ERRORS = {
    "Expecting value": "Invalid value.",
    "Extra data": "The document root must not be followed by other values.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid control character at": "Invalid encoding in string.",
}
"""Python's JSON errors in the words of rapidjson, the parser TF Serving's messages come from."""


def parse_predict_body(body: bytes) -> tuple[object, bool, str]:
    """A :predict body as (values, row_format, signature_name): "instances" (rows) or "inputs" (columns).

    Raises:
        InvalidInputError: not JSON, nested too deeply, or not TF Serving's request shape, in its words.
    """
    if not body.strip():
        raise InvalidInputError("JSON Parse error: The document is empty.")
    try:
        request = json.loads(body)
    except json.JSONDecodeError as error:
        reason = _RAPIDJSON_ERRORS.get(error.msg, f"{error.msg}.")
        raise InvalidInputError(f"JSON Parse error: {reason} at offset: {error.pos}") from None
    except UnicodeDecodeError:
        raise InvalidInputError("JSON Parse error: Invalid encoding in string.") from None
    except RecursionError:
        raise InvalidInputError("JSON Parse error: nested too deeply") from None
    if not isinstance(request, dict):
        raise InvalidInputError(f"JSON Value: {_shown(request)} Is not an object")
    signature = request.get("signature_name", "")
    if not isinstance(signature, str):
        raise InvalidInputError(f"JSON Value: {_shown(request)} not formatted correctly. 'signature_name' key must be "
                                "a string value.")
    if "instances" in request and "inputs" in request:
        raise InvalidInputError(f"JSON Value: {_shown(request)} Not formatted correctly expecting only one of "
                                "'inputs' or 'instances' keys to exist ")
    if "instances" in request:
        if not isinstance(request["instances"], list):
            raise InvalidInputError(f"JSON Value: {_shown(request)} Excepting 'instances' to be an list/array")
        if not request["instances"]:
            raise InvalidInputError(f"JSON Value: {_shown(request)} No values in 'instances' array")
        return request["instances"], True, signature
    if "inputs" in request:
        return request["inputs"], False, signature
    raise InvalidInputError("Missing 'inputs' or 'instances' key")


def _shown(value, limit: int = 200) -> str:
    """A JSON value for an error message, cut to `limit` characters."""
    try:
        text = json.dumps(value)
    except RecursionError:
        return "(nested too deeply to show)"
    return text if len(text) <= limit else text[:limit] + "..."


def metadata_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> dict:
    """GetModelMetadata as TF Serving's REST API prints it: snake_case fields, every field printed, and the
    SignatureDefMap written out under "signature_def" without an "@type" (an Any printed by its contents)."""
    def printed(message) -> dict:
        return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)

    metadata = {}
    for field, packed in response.metadata.items():
        signatures = get_model_metadata_pb2.SignatureDefMap()
        packed.Unpack(signatures)
        metadata[field] = printed(signatures)
    return {"model_spec": printed(response.model_spec), "metadata": metadata}


def predict_json(outputs: tensors.Arrays, row_format: bool) -> dict:
    """A Predict answer as TF Serving's REST API writes it: {"predictions": rows} for "instances" requests,
    {"outputs": columns} for "inputs"; a single output is written bare, several by name.

    Raises:
        InvalidInputError: row format with a scalar output or outputs of different batch sizes.
    """
    values = {key: tensors.to_json(key, array) for key, array in outputs.items()}
    if not row_format:
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    batch = None
    for key, array in outputs.items():
        if array.ndim == 0:
            raise InvalidInputError(f"Tensor name: {key} has no shape information ")
        if batch is not None and array.shape[0] != batch:
            raise InvalidInputError(f"Tensor name: {key} has inconsistent batch size: {array.shape[0]} expecting: "
                                    f"{batch}")
        batch = array.shape[0]
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    return {"predictions": [{key: value[index] for key, value in values.items()} for index in range(batch or 0)]}


def _is_named(value) -> bool:
    """True for a JSON object that names inputs (not a {"b64": ...} value)."""
    return isinstance(value, dict) and set(value) != {"b64"}


def decode_json_inputs(values, specs: tensors.Specs, row_format: bool) -> tensors.Arrays:
    """Turns "instances" (a list of examples) or "inputs" (columns) into arrays by input key.

    Raises:
        InvalidInputError: keys that differ from the signature's, values of the wrong type (naming the
            instance, as TF Serving does), ragged lists.
    """
    columns = _columns(values, specs, row_format)
    tensors.check_keys(specs, columns)
    if row_format:
        for name, column in columns.items():
            for index, item in enumerate(column):
                error = tensors.json_type_error(item, specs[name])
                if error:
                    raise InvalidInputError(f"Failed to process element: {index} of 'instances' list. Error: "
                                            f"INVALID_ARGUMENT: {error}")
    return {name: tensors.from_json(name, value, specs[name]) for name, value in columns.items()}


def _columns(values, specs: tensors.Specs, row_format: bool) -> dict:
    """JSON values by input key; bare values go to a signature's only input."""
    if row_format:
        if all(_is_named(instance) for instance in values):
            names = set(values[0])
            if any(set(instance) != names for instance in values):
                raise InvalidInputError("every instance must name the same inputs")
            return {name: [instance[name] for instance in values] for name in names}
        if any(_is_named(instance) for instance in values):
            raise InvalidInputError("instances mix named inputs and bare values")
    elif _is_named(values):
        return values
    if len(specs) != 1:
        raise InvalidInputError(f"the signature has {len(specs)} inputs ({', '.join(sorted(specs))}); "
                                "name each input")
    return {next(iter(specs)): values}
