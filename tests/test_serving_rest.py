"""TF Serving's REST API on a real `impasto serve` process."""

import base64
import json
import shutil
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pytest

from impasto.export import keys
from impasto.model import image_io


def _call(server, path, body=None, raw: bytes | None = None):
    """(HTTP status, parsed JSON body) of a GET (no body) or POST."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(server.rest_url + path, data=data)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def _pixels(value: dict) -> np.ndarray:
    return image_io.decode_image_bytes(base64.b64decode(value["b64"]))


def test_predict_row_format_round_trip(tiny_server, small_images):
    names = ["chelsea.png", "koala.png"]
    status, body = _call(tiny_server, "/v1/models/tiny:predict", {"instances": [_b64(small_images[n]) for n in names]})
    assert status == 200
    assert len(body["predictions"]) == 2
    for name, value in zip(names, body["predictions"]):
        assert _pixels(value).shape == image_io.decode_image_bytes(small_images[name]).shape


def test_predict_columnar_and_named_instances_with_versions_and_labels(tiny_server, small_images):
    image = small_images["coffee.png"]
    status, body = _call(tiny_server, "/v1/models/tiny/versions/1:predict",
                         {"inputs": {keys.IMAGE_BYTES: [_b64(image)]}})
    assert status == 200 and _pixels(body["outputs"][0]).shape == image_io.decode_image_bytes(image).shape
    instances = [{keys.IMAGE_BYTES: _b64(image), keys.STRENGTH: 0.0, keys.PRESERVE_COLOR: False}]
    status, body = _call(tiny_server, "/v1/models/tiny/labels/stable:predict",
                         {"signature_name": keys.STYLIZE_CONTROLS, "instances": instances})
    assert status == 200
    assert np.abs(_pixels(body["predictions"][0]) - image_io.decode_image_bytes(image)).max() <= 1


def test_predict_errors_are_json_with_http_codes(tiny_server, small_images, data_dir):
    image = _b64(small_images["koala.png"])
    corrupt = _b64((data_dir / "edge_random_bytes.jpg").read_bytes())
    cases = [
        ("/v1/models/tiny:predict", {"instances": [corrupt]}, 400, ""),
        ("/v1/models/tiny:predict", {"instances": [{"b64": "%%%"}]}, 400, "base64"),
        ("/v1/models/tiny:predict", {"instances": [1.5]}, 400, "not of expected type: string"),
        ("/v1/models/tiny:predict", {"instances": []}, 400, "No values in 'instances' array"),
        ("/v1/models/tiny:predict", {"instances": [image], "inputs": [image]}, 400, "only one of"),
        ("/v1/models/tiny:predict", {"signature_name": keys.STYLIZE_CONTROLS, "instances": [image]}, 400, "name each"),
        ("/v1/models/nope:predict", {"instances": [image]}, 404, "Servable not found"),
        ("/v1/models/tiny/versions/9:predict", {"instances": [image]}, 404, "Specific(tiny, 9)"),
        ("/v1/models/tiny/labels/beta:predict", {"instances": [image]}, 400, "label: beta"),
        ("/v1/models/tiny:predict", {"signature_name": "nope", "instances": [image]}, 400,
         'Serving signature name: "nope" not found in signature def'),
        ("/v1/models/tiny:classify", {"examples": []}, 501, "not supported"),
        ("/v1/models/tiny:explode", {"instances": [image]}, 400, "Malformed request"),
    ]
    for path, body, code, text in cases:
        status, answer = _call(tiny_server, path, body)
        assert status == code and text in answer["error"], (path, answer)
    status, answer = _call(tiny_server, "/v1/models/tiny:predict", raw=b"{not json")
    assert status == 400 and "JSON" in answer["error"]
    status, body = _call(tiny_server, "/v1/models/tiny:predict", {"instances": [image]})
    assert status == 200  # Still serving after the bad requests.


def test_status_and_metadata(tiny_server):
    status, body = _call(tiny_server, "/v1/models/tiny")
    assert status == 200
    assert body["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
    status, body = _call(tiny_server, "/v1/models/tiny/versions/1")
    assert [entry["version"] for entry in body["model_version_status"]] == ["1"]
    status, body = _call(tiny_server, "/v1/models/tiny/metadata")
    assert status == 200 and body["model_spec"] == {"name": "tiny", "signature_name": "", "version": "2"}
    signature = body["metadata"]["signature_def"]["signature_def"][keys.SERVING_DEFAULT]
    assert signature["inputs"][keys.IMAGE_BYTES]["dtype"] == "DT_STRING"
    assert _call(tiny_server, "/v1/models/nope")[0] == 404


def test_prometheus_metrics_count_requests_per_model_version_and_status(tiny_server, small_images):
    _call(tiny_server, "/v1/models/tiny/versions/1:predict", {"instances": [_b64(small_images["koala.png"])]})
    _call(tiny_server, "/v1/models/tiny/versions/1:predict", {"instances": [{"b64": ""}]})
    with urllib.request.urlopen(tiny_server.rest_url + "/monitoring/prometheus/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    ok = ':tensorflow:serving:request_count{model_name="tiny",model_version="1",status="OK"} '
    bad = ':tensorflow:serving:request_count{model_name="tiny",model_version="1",status="INVALID_ARGUMENT"} '
    assert ok in text and bad in text
    bucket = ':tensorflow:serving:request_latency_bucket{model_name="tiny",model_version="1",status="OK",le="+Inf"}'
    assert bucket in text


def test_the_rest_port_listens_with_a_backlog_for_many_clients_at_once(tiny_server):
    """socketserver's default backlog of 5 reset connections when 16 clients connected at once (a CI run of
    tests/test_serving_memory.py); the REST port listens with SOMAXCONN, as the gRPC port does."""
    if shutil.which("ss") is None:
        pytest.skip("needs ss (iproute2) to read the listen backlog")
    listing = subprocess.run(["ss", "-ltnH", f"sport = :{tiny_server.rest_port}"], capture_output=True, text=True,
                             check=True).stdout.split()
    assert listing[0] == "LISTEN" and int(listing[2]) >= 128, listing  # ss: state, Recv-Q, Send-Q (the backlog).
