"""Soak test of `impasto serve`: concurrent clients mixing valid and invalid requests for a long time.

It exports a random network (``--width``, default 0.25; buckets 64 and 128 px, no XLA
unless ``--xla``), starts `impasto serve` on it with batching and metrics on, and runs
``--clients`` threads (the last ``--rest-clients`` of them over REST, the rest over
gRPC, one channel each) for ``--seconds``. Each request is valid (a photo crop of 64 to
128 px a side, PNG or JPEG, through serving_default or stylize_controls) or, with
probability ``--invalid-fraction``, invalid: a corrupt, empty, truncated or bomb image,
a wrong dtype or rank, a missing or extra input, an empty or oversized batch, an
inflated shape, or a strength outside [0, 1].

Valid requests must be answered OK and invalid ones INVALID_ARGUMENT (HTTP 400);
anything else counts as unexpected. Reported: requests served, answers by status for
valid and invalid requests, p99 latency of valid requests in the first and the last
minute, and the server's RSS before load (at ready), after the first minute (warm) and at
the end, with the growth from each (target: under 10% from ready). Progress goes to stderr; ONE
JSON object is the last line of stdout.

Example:
    .venv/bin/python bench/soak.py --seconds 600
"""

import argparse
import base64
import collections
import json
import random
import re
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

from impasto.model.tensorflow_import import import_tensorflow_quietly

import_tensorflow_quietly()  # First: the imports below load TensorFlow, whose start-up lines stay off stderr.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bad_input_probes as probes  # noqa: E402  (bench/bad_input_probes.py)
import common  # noqa: E402  (bench/common.py)
import grpc  # noqa: E402
import tensorflow as tf  # noqa: E402
from harness import ServeProcess, work_dir  # noqa: E402  (bench/harness.py)
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from impasto.export import keys  # noqa: E402
from impasto.model import image_io  # noqa: E402

MODEL = "soak"
HTTP_CODES = {200: "OK", 400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 413: "RESOURCE_EXHAUSTED",
              429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED",
              503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
TARGET_RSS_GROWTH = 0.10


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600.0, help="how long the clients run (default 600)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--rest-clients", type=int, default=4, help="how many of them use REST (default 4)")
    parser.add_argument("--invalid-fraction", type=float, default=0.25, help="share of invalid requests (default 0.25)")
    parser.add_argument("--width", type=float, default=0.25, help="width of the random network (default 0.25)")
    parser.add_argument("--xla", action="store_true", help="export with XLA (slower to load on a CPU)")
    parser.add_argument("--window", type=float, default=60.0,
                        help="the first/last window for p99, seconds (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="keep the export and the server log here (default: a temp dir)")
    return parser


def export(work: Path, width: float, xla: bool) -> Path:
    from impasto.export.exporter import export_model
    from impasto.export.signatures import ServingConfig
    from impasto.model.feedforward.transformer import TransformerNet

    config = ServingConfig(max_side=128, ladder=(64,), target="gpu" if xla else "cpu")
    export_model(TransformerNet(width=width, seed=0), {"width": width, "style": "random"}, work / MODEL, 1, config,
                 source="random", warmup_sizes=((64, 64), (128, 128)))
    return work / MODEL


def valid_images(rng: random.Random, count: int = 48) -> list[bytes]:
    """Crops of the test photos, 64 to 128 px a side, as PNG or JPEG."""
    photos = [image_io.load_image(probes.DATA_DIR / name) for name in ("chelsea.png", "coffee.png", "rocket.png",
                                                                       "koala.png", "fruits.png", "puppy.png")]
    images = []
    for index in range(count):
        photo = photos[index % len(photos)]
        height, width = rng.randint(64, 128), rng.randint(64, 128)
        scaled = image_io.resize_image(photo, max(height, photo.shape[0] * height // min(photo.shape[:2])),
                                       max(width, photo.shape[1] * height // min(photo.shape[:2])))
        top, left = rng.randint(0, scaled.shape[0] - height), rng.randint(0, scaled.shape[1] - width)
        crop = scaled[top:top + height, left:left + width]
        images.append(image_io.encode_image(crop, rng.choice(["PNG", "JPEG"])))
    return images


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def request_mix(images: list[bytes]) -> tuple[list[tuple], list[tuple]]:
    """(valid, invalid) requests, each (signature, gRPC inputs, REST body)."""
    def controls(image: bytes, strength: float) -> tuple:
        inputs = {keys.IMAGE_BYTES: tf.make_tensor_proto([image], dtype=tf.string),
                  keys.STRENGTH: tf.make_tensor_proto([strength], dtype=tf.float32),
                  keys.PRESERVE_COLOR: tf.make_tensor_proto([strength < 0.5])}
        body = {"signature_name": keys.STYLIZE_CONTROLS,
                "instances": [{keys.IMAGE_BYTES: _b64(image), keys.STRENGTH: strength,
                               keys.PRESERVE_COLOR: strength < 0.5}]}
        return keys.STYLIZE_CONTROLS, inputs, json.dumps(body).encode()

    valid = [(keys.SERVING_DEFAULT, {keys.IMAGE_BYTES: tf.make_tensor_proto([image], dtype=tf.string)},
              json.dumps({"instances": [_b64(image)]}).encode()) for image in images]
    valid += [controls(image, strength) for image, strength in zip(images[::4], (0.0, 0.3, 0.7, 1.0) * 4)]
    invalid = [(keys.SERVING_DEFAULT, {keys.IMAGE_BYTES: tf.make_tensor_proto([data], dtype=tf.string)},
                json.dumps({"instances": [_b64(data)]}).encode())
               for data in ((probes.DATA_DIR / name).read_bytes() for name in probes.REFUSED)]
    invalid += [(keys.SERVING_DEFAULT, case.inputs, case.rest_body)
                for case in probes.request_cases(images[0], max_batch_size=64)
                if case.grpc_code == grpc.StatusCode.INVALID_ARGUMENT]
    invalid.append(controls(images[1], 2.0))
    return valid, invalid


class Recorder:
    """Thread-safe log of (start offset, latency, valid?, status)."""

    def __init__(self):
        self.lock, self.rows = threading.Lock(), []

    def add(self, started: float, latency: float, valid: bool, status: str) -> None:
        with self.lock:
            self.rows.append((started, latency, valid, status))


def client(index: int, server: ServeProcess, args, valid, invalid, recorder: Recorder, begin: float) -> None:
    rng = random.Random(args.seed * 1000 + index)
    use_rest = index >= args.clients - args.rest_clients
    channel = None if use_rest else grpc.insecure_channel(server.target)
    predict = None if use_rest else prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
    try:
        while time.monotonic() < begin + args.seconds:
            is_valid = rng.random() >= args.invalid_fraction
            signature, inputs, body = rng.choice(valid if is_valid else invalid)
            started = time.monotonic()
            if use_rest:
                url = f"{server.rest_url}/v1/models/{MODEL}:predict"
                http_status, _ = probes.post_json(url, body)
                status = HTTP_CODES.get(http_status, str(http_status))
            else:
                request = predict_pb2.PredictRequest()
                request.model_spec.name, request.model_spec.signature_name = MODEL, signature
                for key, proto in inputs.items():
                    request.inputs[key].CopyFrom(proto)
                try:
                    predict(request, timeout=120)
                    status = "OK"
                except grpc.RpcError as error:
                    status = error.code().name
            recorder.add(started - begin, time.monotonic() - started, is_valid, status)
    finally:
        if channel is not None:
            channel.close()


def p99_ms(latencies: list[float]) -> float | None:
    if len(latencies) < 2:
        return 1000 * latencies[0] if latencies else None
    return 1000 * statistics.quantiles(latencies, n=100, method="inclusive")[98]


def drive(server: ServeProcess, args, valid: list, invalid: list) -> tuple[list, dict, list]:
    """Runs the clients against `server`; returns (recorded rows, RSS at start/warm/end, RSS samples)."""
    rss = {"start": server.rss_bytes()}
    samples, recorder = [], Recorder()
    begin = time.monotonic()
    threads = [threading.Thread(target=client, args=(i, server, args, valid, invalid, recorder, begin))
               for i in range(args.clients)]
    for thread in threads:
        thread.start()
    warm_at = min(args.window, args.seconds / 2)
    while any(thread.is_alive() for thread in threads):
        time.sleep(min(5.0, args.seconds / 20))
        elapsed = time.monotonic() - begin
        samples.append((round(elapsed, 1), server.rss_bytes()))
        if "warm" not in rss and elapsed >= warm_at:
            rss["warm"] = samples[-1][1]
        common.log(f"{elapsed:.0f} s: {len(recorder.rows)} requests, server RSS {samples[-1][1] / 2**20:.0f} MiB")
    rss["end"] = server.rss_bytes()
    rss.setdefault("warm", rss["start"])
    return recorder.rows, rss, samples


def run(args, work: Path) -> dict:
    rng = random.Random(args.seed)
    common.log(f"exporting a width-{args.width} network ...")
    model_dir = export(work, args.width, args.xla)
    valid, invalid = request_mix(valid_images(rng))
    (work / "monitoring.config").write_text('prometheus_config { enable: true path: "/metrics" }\n')
    common.log(f"{len(valid)} valid and {len(invalid)} invalid requests; starting impasto serve ...")
    with ServeProcess(["--model_base_path", model_dir, "--model_name", MODEL, "--enable_batching",
                       "--monitoring_config_file", work / "monitoring.config"], work / "serve.log") as server:
        rows, rss, samples = drive(server, args, valid, invalid)
        with urllib.request.urlopen(f"{server.rest_url}/metrics", timeout=30) as response:
            in_flight = re.search(r"^:impasto:serving:requests_in_flight (\d+)$", response.read().decode(),
                                  re.MULTILINE)
        alive = server.alive()
        exit_code = server.stop()
    by_status = {"valid": collections.Counter(r[3] for r in rows if r[2]),
                 "invalid": collections.Counter(r[3] for r in rows if not r[2])}
    unexpected = (sum(n for status, n in by_status["valid"].items() if status != "OK")
                  + sum(n for status, n in by_status["invalid"].items() if status != "INVALID_ARGUMENT"))
    first = [r[1] for r in rows if r[2] and r[0] < args.window]
    last = [r[1] for r in rows if r[2] and r[0] >= args.seconds - args.window]
    growth = (rss["end"] - rss["start"]) / rss["start"]
    return {
        "benchmark": "soak",
        "seconds": args.seconds, "clients": args.clients, "rest_clients": args.rest_clients,
        "invalid_fraction": args.invalid_fraction, "width": args.width, "xla": args.xla,
        "requests": len(rows),
        "served_ok": by_status["valid"].get("OK", 0),
        "requests_per_second": round(len(rows) / args.seconds, 2),
        "answers": {kind: dict(counter) for kind, counter in by_status.items()},
        "unexpected": unexpected,
        "p99_ms_first_window": p99_ms(first), "p99_ms_last_window": p99_ms(last), "window_s": args.window,
        "rss_mib": {name: round(value / 2**20, 1) for name, value in rss.items()},
        "rss_growth_from_warm": round((rss["end"] - rss["warm"]) / rss["warm"], 4),
        "rss_growth_from_start": round(growth, 4),
        "rss_samples_mib": [(t, round(v / 2**20, 1)) for t, v in samples[:: max(1, len(samples) // 20)]],
        "in_flight_after": int(in_flight.group(1)) if in_flight else None,
        "server_alive_at_end": alive, "server_exit_code": exit_code,
        "target": {"rss_growth_below": TARGET_RSS_GROWTH, "unexpected": 0,
                   "met": bool(alive and exit_code == 0 and unexpected == 0 and growth < TARGET_RSS_GROWTH)},
        "environment": common.environment(),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.rest_clients <= args.clients or not 0 <= args.invalid_fraction <= 1 or args.seconds <= 0:
        raise SystemExit("need 0 <= --rest-clients <= --clients, 0 <= --invalid-fraction <= 1 and --seconds > 0")
    with work_dir(args.work, "impasto-bench-soak-") as work:
        figures = run(args, work)
    common.print_json(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
