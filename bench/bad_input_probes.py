"""One bad input through one entry point, with its outcome classified: the probes behind bench/bad_inputs.py.

Every probe returns an `Outcome` whose status is

* ``converted``: the input was accepted and stylized (or, for training, cropped),
  at the input's own size;
* ``refused``: it was refused the defined way for that entry point: exit code 2
  and no output file (CLIs), INVALID_ARGUMENT (gRPC), HTTP 400 (REST), skipped
  and counted (training data);
* ``failed``: anything else (another exit code or status, an output of the wrong
  size, an exception): behaviour that is not defined.

tests/test_bad_inputs.py runs the same probes against the session's server.
"""

import base64
import contextlib
import dataclasses
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from impasto.export import keys
from impasto.model import image_io

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "tests" / "data"
IMPASTO = Path(sys.executable).parent / "impasto"
CONVERTED = ("edge_16bit.png", "edge_1x1.png", "edge_animated.gif", "edge_cmyk.jpg", "edge_grayscale.png",
             "edge_progressive.jpg", "edge_rgba.png")
"""Edge files every entry point converts and stylizes."""
REFUSED = ("edge_bomb_30000.png", "edge_empty.jpg", "edge_random_bytes.jpg", "edge_truncated.jpg")
"""Edge files every entry point refuses (the bomb from its header alone)."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one entry point did with one input: a status (see the module docstring) and what it said."""

    status: str
    detail: str

    def cell(self) -> str:
        """The outcome as a Markdown table cell (file paths shortened to their names)."""
        detail = self.detail.replace(f"{DATA_DIR}/", "").replace("impasto: error: ", "").replace("impasto: ", "")
        detail = detail.replace("|", "\\|").replace("\n", " ")
        return f"{self.status}: {detail[:100]}" if detail else self.status


def _pixels_size(data: bytes) -> tuple[int, int]:
    """(height, width) of an accepted image as image_io decodes it (GIF: the first frame)."""
    return image_io.decode_image_bytes(data).shape[:2]


def _converted_if_same_size(source: bytes, result: bytes, what: str) -> Outcome:
    expected, produced = _pixels_size(source), _pixels_size(result)
    if expected != produced:
        return Outcome("failed", f"{what} is {produced[1]}x{produced[0]}, the input {expected[1]}x{expected[0]}")
    return Outcome("converted", f"{what} {produced[1]}x{produced[0]}")


def _cli(module: str, command: str, argv: list[str], in_process: bool) -> tuple[int, str]:
    """(exit code, stderr) of `impasto COMMAND ARGV`: a child process, or `run(argv)` in this process."""
    if not in_process:
        finished = subprocess.run([str(IMPASTO), command, *argv], capture_output=True, text=True, timeout=600)
        return finished.returncode, finished.stderr
    import importlib

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = importlib.import_module(module).run(argv)
    return code, stderr.getvalue()


def _cli_outcome(code: int, stderr: str, source: Path, output: Path) -> Outcome:
    message = next((line for line in reversed(stderr.splitlines()) if "error" in line or str(source.name) in line), "")
    if code == 0 and output.is_file():
        return _converted_if_same_size(source.read_bytes(), output.read_bytes(), "stylized")
    if code == 2 and not output.exists() and message and "Traceback" not in stderr:
        return Outcome("refused", f"exit 2, {message.strip()}")
    return Outcome("failed", f"exit {code}: {stderr.strip()[-200:]}")


def stylize_cli(source: Path, bundle: Path, out_dir: Path, in_process: bool = False) -> Outcome:
    """`impasto stylize --method fast --model BUNDLE SOURCE --out OUT_DIR/<stem>.png`."""
    output = out_dir / f"{source.stem}.png"
    code, stderr = _cli("impasto.model.cli", "stylize", ["--method", "fast", "--model", str(bundle), str(source),
                                                          "--out", str(output), "--no-progress"], in_process)
    return _cli_outcome(code, stderr, source, output)


def client_cli(source: Path, target: str, model: str, out_dir: Path, in_process: bool = False) -> Outcome:
    """`impasto client SOURCE --out OUT_DIR --server TARGET --model MODEL`."""
    argv = [str(source), "--out", str(out_dir), "--server", target, "--model", model, "--no-progress",
            "--retries", "0"]
    code, stderr = _cli("impasto.serving.client_cli", "client", argv, in_process)
    return _cli_outcome(code, stderr, source, out_dir / f"{source.stem}.png")


def train_pipeline(source: Path, size: int = 32) -> Outcome:
    """The training photo pipeline on a folder holding only `source`: crops, or skipped with a reason."""
    from impasto.training import data

    if source.suffix.lower() not in data.PHOTO_SUFFIXES:
        return Outcome("failed", f"{source.suffix} files are not listed as training photos")
    skipped = data.SkippedFiles()
    dataset = data.training_dataset([str(source)], size=size, batch_size=1, seed=0, skipped=skipped)
    try:
        batch = next(iter(dataset)).numpy()
    except tf.errors.InvalidArgumentError:
        if str(source) in skipped.reasons:
            return Outcome("refused", f"skipped, {skipped.reasons[str(source)]}")
        raise
    if batch.shape != (1, size, size, 3) or not 0 <= batch.min() <= batch.max() <= 255:
        return Outcome("failed", f"batch of shape {batch.shape}, range {batch.min()}..{batch.max()}")
    return Outcome("converted", f"{size}x{size} crop")


def server_grpc(predict, model: str, data: bytes) -> Outcome:
    """One image through PredictionService.Predict (`predict` is a stub's bound method)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs[keys.IMAGE_BYTES].CopyFrom(tf.make_tensor_proto([data], dtype=tf.string))
    try:
        response = predict(request, timeout=120)
    except grpc.RpcError as error:
        status = "refused" if error.code() == grpc.StatusCode.INVALID_ARGUMENT else "failed"
        return Outcome(status, f"{error.code().name}, {error.details()}")
    return _converted_if_same_size(data, response.outputs[keys.STYLIZED_IMAGE_BYTES].string_val[0], "OK")


def post_json(url: str, body: bytes, context=None) -> tuple[int, dict]:
    """(HTTP status, parsed JSON answer) of a POST; a body that is not JSON gives {"error": <its text>}."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120, context=context) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, {"error": text.decode(errors="replace")}


def server_rest(rest_url: str, model: str, data: bytes) -> Outcome:
    """One image through the REST :predict API, as {"instances": [{"b64": ...}]}."""
    body = json.dumps({"instances": [{"b64": base64.b64encode(data).decode()}]}).encode()
    status, answer = post_json(f"{rest_url}/v1/models/{model}:predict", body)
    if status != 200:
        return Outcome("refused" if status == 400 else "failed", f"HTTP {status}, {answer.get('error', answer)}")
    return _converted_if_same_size(data, base64.b64decode(answer["predictions"][0]["b64"]), "200")


# Malformed requests: the same mistakes through both front ends.


@dataclasses.dataclass(frozen=True)
class RequestCase:
    """One malformed request, as gRPC inputs and as a REST body, with the answer it must get."""

    name: str
    inputs: dict
    rest_body: bytes
    grpc_code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT
    http_status: int = 400
    model: str = ""


def request_cases(image: bytes, max_batch_size: int, max_request_bytes: int | None = None) -> list[RequestCase]:
    """The malformed requests, built around one valid encoded `image` and the server's limits."""
    b64 = {"b64": base64.b64encode(image).decode()}
    strings = tf.make_tensor_proto([image], dtype=tf.string)
    inflated = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[image])
    inflated.tensor_shape.dim.add(size=10**9)  # A few bytes that claim a billion images.
    cases = [
        RequestCase("wrong dtype", {keys.IMAGE_BYTES: tf.make_tensor_proto([1.5, 2.5])}, _json({"instances": [1.5]})),
        RequestCase("wrong rank", {keys.IMAGE_BYTES: tf.make_tensor_proto([[image]], dtype=tf.string)},
                    _json({"instances": [[b64]]})),
        RequestCase("missing input key", {"pixels": strings}, _json({"instances": [{"pixels": b64}]})),
        RequestCase("extra input key", {keys.IMAGE_BYTES: strings, "extra": strings},
                    _json({"instances": [{keys.IMAGE_BYTES: b64, "extra": b64}]})),
        RequestCase("empty batch", {keys.IMAGE_BYTES: tf.make_tensor_proto(np.array([], object), dtype=tf.string)},
                    _json({"inputs": {keys.IMAGE_BYTES: []}})),
        RequestCase(f"batch over {max_batch_size}",
                    {keys.IMAGE_BYTES: tf.make_tensor_proto([image] * (max_batch_size + 1), dtype=tf.string)},
                    _json({"instances": [b64] * (max_batch_size + 1)})),
        RequestCase("inflated: 1e9-image shape (gRPC), 1e5-deep lists (REST)", {keys.IMAGE_BYTES: inflated},
                    b'{"inputs": {"image_bytes": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"),
        RequestCase("model name ../x", {keys.IMAGE_BYTES: strings}, _json({"instances": [b64]}),
                    grpc.StatusCode.NOT_FOUND, 404, model="..%2Fx"),
    ]
    if max_request_bytes:
        huge = b"\0" * (max_request_bytes + 1)
        cases.append(RequestCase(f"request over {max_request_bytes} bytes",
                                 {keys.IMAGE_BYTES: tf.make_tensor_proto([huge], dtype=tf.string)},
                                 _json({"instances": [{"b64": base64.b64encode(huge).decode()}]}),
                                 grpc.StatusCode.RESOURCE_EXHAUSTED, 413))
    return cases


def _json(value) -> bytes:
    return json.dumps(value).encode()


def grpc_case(predict, model: str, case: RequestCase) -> Outcome:
    """Sends `case` over gRPC; ``refused`` when it gets its expected status code."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = case.model.replace("%2F", "/") or model
    for key, proto in case.inputs.items():
        request.inputs[key].CopyFrom(proto)
    try:
        predict(request, timeout=120)
    except grpc.RpcError as error:
        status = "refused" if error.code() == case.grpc_code else "failed"
        return Outcome(status, f"{error.code().name}, {error.details()}")
    return Outcome("failed", "answered OK")


def rest_case(rest_url: str, model: str, case: RequestCase) -> Outcome:
    """Sends `case` to the REST API; ``refused`` when it gets its expected HTTP status."""
    status, answer = post_json(f"{rest_url}/v1/models/{case.model or model}:predict", case.rest_body)
    return Outcome("refused" if status == case.http_status else "failed", f"HTTP {status}, {answer.get('error')}")
