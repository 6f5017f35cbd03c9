"""TF Serving's REST API on the standard library's ThreadingHTTPServer.

    POST /v1/models/NAME[/versions/N | /labels/L]:predict   {"instances": [...]} or {"inputs": ...}
    GET  /v1/models/NAME[/versions/N | /labels/L]           model status
    GET  /v1/models/NAME[/versions/N | /labels/L]/metadata  signature defs
    GET  <prometheus path>                                  metrics, when a monitoring config enables them

String values travel as {"b64": "..."}; string outputs whose key ends in
"_bytes" come back the same way. Errors are {"error": "..."} with the HTTP
status that matches the gRPC code (400 bad input, 404 not found, ...).
"""

import http.server
import json
import logging
import re
import threading

from google.protobuf import json_format

from impasto.model.errors import InvalidInputError
from impasto.serving import tensors
from impasto.serving.errors import RequestTooLargeError, error_message, http_status
from impasto.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from impasto.serving.predictor import Predictor, Target

LOG = logging.getLogger("impasto.serving")
_ROUTE = re.compile(r"^/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                    r"(?P<action>:predict|:classify|:regress|/metadata)?$")


class RestServer(http.server.ThreadingHTTPServer):
    """The HTTP server; `shutdown()` then `server_close()` waits for requests in flight.

    Args:
        address: (host, port).
        predictor: the shared request path.
        metrics_path: where to serve Prometheus metrics; None for nowhere.
    """

    daemon_threads = False  # server_close() joins the request threads: in-flight requests finish.

    def __init__(self, address: tuple[str, int], predictor: Predictor, metrics_path: str | None):
        self.predictor, self.metrics_path = predictor, metrics_path
        super().__init__(address, _Handler)

    def start(self) -> threading.Thread:
        """Serves in a background thread."""
        thread = threading.Thread(target=self.serve_forever, name="rest", daemon=True)
        thread.start()
        return thread


class _Handler(http.server.BaseHTTPRequestHandler):
    server: RestServer
    protocol_version = "HTTP/1.0"  # One request per connection: nothing idles when the server drains.

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
        match = _ROUTE.match(path)
        action = match and match["action"]
        if match is None or (method == "GET") != (action in (None, "/metadata")):
            self._send_json(404, {"error": f"Malformed request: {method} {path}"})
            return
        target = Target(match["model"], int(match["version"]) if match["version"] else None, match["label"] or "")
        try:
            if action is None:
                body = json_format.MessageToDict(self.server.predictor.status(target), preserving_proto_field_name=True,
                                                 always_print_fields_with_no_presence=True)
            elif action == "/metadata":
                response = self.server.predictor.metadata(target, ["signature_def"])
                body = json_format.MessageToDict(response, preserving_proto_field_name=True)
            elif action == ":predict":
                body = self._predict(target)
            else:
                self._send_json(501, {"error": f"{action[1:]} is not supported: impasto models have predict "
                                               "signatures only; use :predict"})
                return
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
        try:
            self.server.predictor.check_size(int(length))
        except RequestTooLargeError:
            self._discard(int(length))  # Read (without keeping) so the client gets the answer, not a reset.
            raise
        try:
            request = json.loads(self.rfile.read(int(length)))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InvalidInputError(f"JSON Parse error: {error}") from None
        if not isinstance(request, dict):
            raise InvalidInputError("JSON Value: the request body must be an object")
        if ("instances" in request) == ("inputs" in request):
            raise InvalidInputError("Not formatted correctly expecting only one of 'inputs' or 'instances' keys exist")
        row_format = "instances" in request
        signature = request.get("signature_name", "")
        if not isinstance(signature, str):
            raise InvalidInputError("'signature_name' must be a string")
        target = Target(target.model, target.version, target.label, signature)
        values = request["instances"] if row_format else request["inputs"]
        prediction = self.server.predictor.predict(target, lambda specs: _decode(values, specs, row_format))
        outputs = {key: tensors.to_json(key, array) for key, array in prediction.outputs.items()}
        if not row_format:
            return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
        if len(outputs) == 1:
            return {"predictions": next(iter(outputs.values()))}
        count = len(next(iter(outputs.values())))
        return {"predictions": [{key: value[index] for key, value in outputs.items()} for index in range(count)]}

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


def _is_named(value) -> bool:
    """True for a JSON object that names inputs (not a {"b64": ...} value)."""
    return isinstance(value, dict) and set(value) != {"b64"}


def _decode(values, specs: tensors.Specs, row_format: bool) -> tensors.Arrays:
    """Turns "instances" (a list of examples) or "inputs" (columns) into arrays by input key."""
    columns = _columns(values, specs, row_format)
    tensors.check_keys(specs, columns)
    return {name: tensors.from_json(name, value, specs[name]) for name, value in columns.items()}


def _columns(values, specs: tensors.Specs, row_format: bool) -> dict:
    """JSON values by input key; bare values go to a signature's only input."""
    if row_format:
        if not isinstance(values, list) or not values:
            raise InvalidInputError("'instances' must be a non-empty list")
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
