"""Load benchmark of `impasto serve`: N concurrent gRPC clients for a fixed time, against in-process calls.

For each ``--sizes`` side (a square photo, PNG) and each ``--clients`` count it runs:

* ``in_process``: N threads calling the SavedModel's signature directly in this
  process (the ceiling a server could reach);
* ``served``: N threads calling `impasto serve` through `StylizeClient` (one
  shared channel), with server-side batching off;
* ``served_batching``: the same against a server with ``--enable_batching``.

Each run lasts ``--seconds``; throughput counts every request finished, over the
time until the last one finishes. Every result has images/s, p50/p99 latency,
the error count and ``ratio`` = its throughput / in_process throughput for the
same size and clients. The server is started here (one process per batching
mode). Without ``--model-base``, a network of ``--width`` (random weights; the
same compute as a trained one) or ``--source`` is exported first, with one size
bucket per ``--sizes`` side. Progress goes to stderr; the figures are one JSON
object on the last line of stdout.

Example:
    .venv/bin/python bench/load.py --clients 1,4,16 --sizes 256,512 --seconds 10
"""

import argparse
import functools
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from impasto.model.tensorflow_import import import_tensorflow_quietly

import_tensorflow_quietly()  # First: the imports below load TensorFlow, whose start-up lines stay off stderr.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (bench/common.py)
import tensorflow as tf  # noqa: E402

from impasto.export import keys  # noqa: E402
from impasto.model import image_io  # noqa: E402
from impasto.serving.client import StylizeClient  # noqa: E402
from impasto.testing import ServerProcess  # noqa: E402

DEFAULT_PHOTO = common.REPO_ROOT / "tests" / "data" / "chelsea.png"
TARGET = {"size": 512, "clients": 16, "ratio": 0.9}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base",
                        help="MODELS_DIR holding MODEL/<version>/ (default: export one to a temporary folder)")
    parser.add_argument("--model", default="bench", help="model name under --model-base (default: bench)")
    parser.add_argument("--source", help="without --model-base: export this bundled model / run dir / .npz")
    parser.add_argument("--width", type=float, default=1.0,
                        help="without --model-base or --source: random network width")
    parser.add_argument("--signature", default=keys.SERVING_DEFAULT, help="signature to call (default serving_default)")
    parser.add_argument("--clients", type=common.int_list, default=[1, 4, 16], help="concurrent clients, e.g. 1,4,16")
    parser.add_argument("--sizes", type=common.int_list, default=[256, 512], help="square sides, e.g. 256,512")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run (default 10)")
    parser.add_argument("--modes", default="served,served_batching", help="served modes to run (comma-separated)")
    parser.add_argument("--batching", default="max_batch_size { value: 16 }\nbatch_timeout_micros { value: 2000 }\n"
                        "num_batch_threads { value: 2 }\nmax_enqueued_batches { value: 64 }\n",
                        help="batching_parameters.txt content for served_batching")
    parser.add_argument("--photo", default=str(DEFAULT_PHOTO), help="the image, resized to each size")
    return parser


def drive(call, clients: int, seconds: float) -> dict:
    """Runs `call()` from `clients` threads for `seconds`; returns throughput, latency and errors."""
    latencies, errors, lock = [], [], threading.Lock()
    start = time.perf_counter()
    end = start + seconds

    def client() -> None:
        while time.perf_counter() < end:
            began = time.perf_counter()
            try:
                call()
            except Exception as error:  # noqa: BLE001 - counted and reported.
                with lock:
                    details = error.details() if hasattr(error, "details") else error
                    errors.append(f"{type(error).__name__}: {details}")
                continue
            with lock:
                latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {
        "throughput_ips": len(latencies) / elapsed,
        "requests": len(latencies),
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p99_ms": 1000 * quantiles[98] if latencies else None,
        "errors": len(errors),
        "first_errors": sorted(set(errors))[:3],
        "elapsed_s": elapsed,
    }


def run(args, work: Path) -> dict:
    model_dir = (Path(args.model_base) / args.model if args.model_base
                 else common.export_for_sizes(work / args.model, args.width, args.source, args.sizes))
    version = max(int(child.name) for child in model_dir.iterdir() if child.name.isdigit())
    photo = image_io.load_image(args.photo)
    images = {size: image_io.encode_image(image_io.resize_image(photo, size, size)) for size in args.sizes}
    results = []

    common.log(f"in-process: loading {model_dir / str(version)} ...")
    signature = tf.saved_model.load(str(model_dir / str(version))).signatures[args.signature]
    for size in args.sizes:
        batch = tf.constant([images[size]])
        signature(**{keys.IMAGE_BYTES: batch})  # Trace / compile outside the timed runs.
        for clients in args.clients:
            common.log(f"in_process {size} px, {clients} clients ...")
            call = functools.partial(signature, **{keys.IMAGE_BYTES: batch})
            figures = drive(lambda call=call: call()[keys.STYLIZED_IMAGE_BYTES].numpy(), clients, args.seconds)
            results.append({"mode": "in_process", "size": size, "clients": clients, **figures, "ratio": 1.0})
    baseline = {(r["size"], r["clients"]): r["throughput_ips"] for r in results}

    for mode in [m for m in args.modes.split(",") if m]:
        batching_file = None
        if mode == "served_batching":
            batching_file = work / "batching_parameters.txt"
            batching_file.write_text(args.batching)
        common.log(f"{mode}: starting impasto serve ...")
        flags = ["--model_base_path", model_dir, "--model_name", args.model, "--file_system_poll_wait_seconds", "0"]
        if batching_file is not None:
            flags += ["--enable_batching", "--batching_parameters_file", batching_file]
        server = ServerProcess(flags, work / f"{mode}.log", rest=False).wait_ready(timeout=3600)
        try:
            with StylizeClient(server.target, args.model, args.signature, timeout=120, retries=2) as client:
                for size in args.sizes:
                    client.stylize(images[size])
                    for clients in args.clients:
                        common.log(f"{mode} {size} px, {clients} clients ...")
                        figures = drive(functools.partial(client.stylize, images[size]), clients, args.seconds)
                        ratio = figures["throughput_ips"] / baseline[(size, clients)]
                        results.append({"mode": mode, "size": size, "clients": clients, **figures, "ratio": ratio})
        finally:
            server.stop(60)
    target = [r for r in results if r["mode"] != "in_process"
              and (r["size"], r["clients"]) == (TARGET["size"], TARGET["clients"])]
    return {
        "benchmark": "load",
        "model": str(model_dir),
        "width": None if args.model_base or args.source else args.width,
        "signature": args.signature,
        "seconds_per_run": args.seconds,
        "results": results,
        "target": {**TARGET, "ratios": {r["mode"]: r["ratio"] for r in target},
                   "met": bool(target) and max(r["ratio"] for r in target) >= TARGET["ratio"]},
        "environment": common.environment(),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="impasto-bench-load-") as work:
        figures = run(args, Path(work))
    common.print_json(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
