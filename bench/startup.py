"""How fast `impasto serve` is ready, how much it holds, and how a version reload feels under load.

It exports bundled models (``--models``, default all four) twice: the default export
(CPU target, no XLA) and a GPU-target export (XLA-compiled ``serving_default``), each
with the default warmup sizes unless ``--warmup-sizes`` says otherwise. Then, each in a
fresh `impasto serve` process on loopback:

- start-up: seconds from the process start to the first successful Predict (a
  256 x 256 PNG through ``serving_default``, retried until it succeeds), for 1 model
  and for all of them, per target, cold and again with the cache warm (for the GPU
  target a fresh ``--xla_cache_dir``, then the same directory again; the CPU target
  compiles nothing, so its second start shows the file cache only); the server's
  RSS at ready, against a bare ``python -c 'import tensorflow'`` measured in the same run;
- first request per size: on a freshly started one-model server, the first request of
  each of ``--sizes`` (some warmed, some not) against the median of the next
  ``--repeats``, while one other client sends 256 x 256 requests the whole time (its
  worst latency during the first requests against its own steady median shows whether
  a new size holds other requests up);
- reload under load: ``--clients`` clients send 256 and 512 px requests; after
  ``--steady-seconds`` a copy of the version is published as version 2 and the server
  loads, warms and switches to it; p99 latency while it does, against the steady p99,
  and the failed requests.

The machine may be shared and busy: compare the ratios, not the seconds. Progress goes
to stderr; ONE JSON object is the last line of stdout.

Example:
    .venv/bin/python bench/startup.py
    .venv/bin/python bench/startup.py --models starry_night --targets cpu --sizes 256,512,1024
"""

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from impasto.model.tensorflow_import import import_tensorflow_quietly

import_tensorflow_quietly()  # First: the imports below load TensorFlow, whose start-up lines stay off stderr.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (bench/common.py)
import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from harness import REPO_ROOT, work_dir  # noqa: E402  (bench/harness.py)
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from impasto.export import keys  # noqa: E402
from impasto.export.options import DEFAULT_WARMUP_SIZES, TARGETS  # noqa: E402
from impasto.model import image_io  # noqa: E402
from impasto.testing import ServerProcess  # noqa: E402

PHASES = ("startup", "first_request", "reload")
BUNDLED = ("starry_night", "great_wave", "composition_viii", "the_night_cafe")
PYTHON = Path(sys.executable)
IMPASTO = PYTHON.parent / "impasto"
PHOTO = REPO_ROOT / "data" / "samples" / "photos" / "gcompris_chateau_de_chenonceau.jpg"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(BUNDLED), help="bundled models to export (default all four)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="export targets (default cpu,gpu)")
    parser.add_argument("--warmup-sizes", default=",".join(f"{h}x{w}" for h, w in DEFAULT_WARMUP_SIZES),
                        help="impasto export --warmup-sizes (default %(default)s)")
    parser.add_argument("--sizes", type=common.int_list, default=[256, 512, 384, 768, 1024],
                        help="square sides for the first-request figures (default 256,512,384,768,1024)")
    parser.add_argument("--repeats", type=int, default=3, help="steady requests per size (default 3)")
    parser.add_argument("--clients", type=int, default=4, help="clients during the reload (default 4)")
    parser.add_argument("--steady-seconds", type=float, default=30.0,
                        help="load before the reload starts, for the steady p99 (default 30)")
    parser.add_argument("--timeout", type=float, default=900.0, help="longest wait for one server (default 900 s)")
    parser.add_argument("--phases", default=",".join(PHASES), help="which figures (default %(default)s)")
    parser.add_argument("--work-dir", type=Path,
                        help="keep exports, logs and each phase's figures here, and reuse exports found there "
                             "(default: a temporary folder)")
    return parser


def square_png(side: int) -> bytes:
    """The sample photo resized to side x side, as PNG."""
    return image_io.encode_image(image_io.resize_image(image_io.load_image(PHOTO), side, side))


def predict_request(model: str, image: bytes) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs[keys.IMAGE_BYTES].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
    return request


def channel(target: str) -> grpc.Channel:
    """A channel that retries a closed port every 0.1 s (gRPC's default backoff grows to 2 minutes)."""
    return grpc.insecure_channel(target, [("grpc.max_receive_message_length", -1),
                                          ("grpc.max_send_message_length", -1),
                                          ("grpc.initial_reconnect_backoff_ms", 100),
                                          ("grpc.min_reconnect_backoff_ms", 100),
                                          ("grpc.max_reconnect_backoff_ms", 100)])


def export_all(models: list[str], targets: list[str], warmup_sizes: str, root: Path) -> dict:
    """{target: models dir} with every model exported for that target (two exports at a time)."""
    folders = {target: root / f"models_{target}" for target in targets}
    jobs = [[str(IMPASTO), "export", model, "--model-base", str(folders[target]), "--name", model,
             "--target", target, "--warmup-sizes", warmup_sizes, "--version", "1"]
            for target in targets for model in models if not (folders[target] / model / "1").is_dir()]
    running = []
    for job in jobs:
        common.log("exporting:", " ".join(job[2:]))
        running.append(subprocess.Popen(job, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        if len(running) == 2:
            _finish(running.pop(0))
    for process in running:
        _finish(process)
    return folders


def _finish(process: subprocess.Popen) -> None:
    _, errors = process.communicate()
    if process.returncode:
        raise RuntimeError(f"impasto export failed ({process.returncode}): {errors[-2000:]}")


def bare_import_rss() -> int:
    """RSS of a fresh ``python -c 'import tensorflow'`` right after the import, in bytes."""
    code = ("import tensorflow, pathlib; print([l for l in pathlib.Path('/proc/self/status').read_text().splitlines()"
            " if l.startswith('VmRSS:')][0].split()[1])")
    finished = subprocess.run([str(PYTHON), "-c", code], capture_output=True, text=True, check=True,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    return int(finished.stdout.split()[-1]) * 1024


def write_config(models_dir: Path, names: list[str], path: Path) -> Path:
    path.write_text("model_config_list {\n" + "".join(
        f'  config {{ name: "{name}" base_path: "{models_dir / name}" model_platform: "tensorflow" }}\n'
        for name in names) + "}\n")
    return path


def start_and_time(args: list, log_path: Path, model: str, timeout: float) -> tuple[ServerProcess, dict]:
    """Starts `impasto serve ARGS` and sends Predicts until one succeeds; the figures of that start."""
    image = square_png(256)
    started = time.perf_counter()
    server = ServerProcess([str(arg) for arg in args], log_path, rest=False)
    request = predict_request(model, image)
    with channel(server.target) as grpc_channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc_channel)
        while True:
            if server.process.poll() is not None or time.perf_counter() - started > timeout:
                server.stop()
                raise RuntimeError(f"impasto serve did not answer (exit {server.process.returncode}):\n{server.log()}")
            try:
                stub.Predict(request, timeout=60)
                break
            except grpc.RpcError:
                time.sleep(0.1)
    first_predict = time.perf_counter() - started
    log = server.log()
    return server, {
        "seconds_to_first_predict": first_predict,
        "rss_at_ready_bytes": common.rss_bytes(server.process.pid),
        "load_log": [line.split("impasto serve: ", 1)[1] for line in log.splitlines() if "warmed up in" in line],
    }


def startup_figures(folders: dict, models: list[str], args, root: Path, bare_rss: int) -> dict:
    figures = {}
    for target, models_dir in folders.items():
        cache = root / f"xla_cache_{target}"
        for count in sorted({1, len(models)}):
            config = write_config(models_dir, models[:count], root / f"{target}_{count}.config")
            for state in ("cold", "warm"):
                if state == "cold":
                    shutil.rmtree(cache, ignore_errors=True)
                label = f"{target}_{count}_models_{state}"
                common.log(f"start-up: {label} ...")
                server, result = start_and_time(
                    ["--model_config_file", config, "--xla_cache_dir", cache, "--file_system_poll_wait_seconds", "0"],
                    root / f"{label}.log", models[0], args.timeout)
                server.stop()
                result["rss_above_bare_import_bytes"] = result["rss_at_ready_bytes"] - bare_rss
                figures[label] = result
        if len(models) > 1:
            one, many = figures[f"{target}_1_models_cold"], figures[f"{target}_{len(models)}_models_cold"]
            figures[f"{target}_rss_per_further_model_bytes"] = (
                (many["rss_at_ready_bytes"] - one["rss_at_ready_bytes"]) / (len(models) - 1))
    return figures


def first_request_figures(models_dir: Path, model: str, args, root: Path, label: str) -> dict:
    """First request per size against steady, with a 256 px client running alongside."""
    server, _ = start_and_time(["--model_base_path", models_dir / model, "--model_name", model,
                                "--xla_cache_dir", root / f"xla_cache_first_{label}",
                                "--file_system_poll_wait_seconds", "0"],
                               root / f"first_{label}.log", model, args.timeout)
    small = predict_request(model, square_png(256))
    background, stop = [], threading.Event()

    def other_client() -> None:
        with channel(server.target) as grpc_channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc_channel)
            while not stop.is_set():
                began = time.perf_counter()
                stub.Predict(small, timeout=300)
                background.append((began, time.perf_counter() - began))

    thread = threading.Thread(target=other_client, daemon=True)
    try:
        with channel(server.target) as grpc_channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc_channel)
            thread.start()
            time.sleep(2.0)
            sizes, windows = {}, []
            for side in args.sizes:
                request = predict_request(model, square_png(side))
                began = time.perf_counter()
                stub.Predict(request, timeout=600)
                first = time.perf_counter() - began
                windows.append((began, began + first))
                call = functools.partial(stub.Predict, request, timeout=600)
                steady = statistics.median(common.time_call(call) for _ in range(args.repeats))
                sizes[str(side)] = {"first_ms": 1000 * first, "steady_ms": 1000 * steady,
                                    "first_over_steady": first / steady}
            time.sleep(2.0)
    finally:
        stop.set()
        thread.join(timeout=300)
        server.stop()
    during = [seconds for began, seconds in background if any(start <= began < end for start, end in windows)]
    steady_small = statistics.median(seconds for _, seconds in background)
    return {
        "sizes": sizes,
        "other_client_256_steady_ms": 1000 * steady_small,
        "other_client_256_worst_during_first_requests_ms": 1000 * max(during, default=0.0),
    }


def reload_figures(models_dir: Path, model: str, args, root: Path) -> dict:
    """p99 latency of `--clients` clients before and during a version reload; failed requests."""
    base = root / "reload" / model
    shutil.rmtree(base.parent, ignore_errors=True)
    shutil.copytree(models_dir / model / "1", base / "1")
    server, _ = start_and_time(["--model_base_path", base, "--model_name", model,
                                "--file_system_poll_wait_seconds", "1"], root / "reload.log", model, args.timeout)
    requests = [predict_request(model, square_png(side)) for side in (256, 512)]
    samples, failures, stop = [], [], threading.Event()

    def client(index: int) -> None:
        with channel(server.target) as grpc_channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc_channel)
            count = index
            while not stop.is_set():
                began = time.perf_counter()
                try:
                    stub.Predict(requests[count % 2], timeout=300)
                    samples.append((began, time.perf_counter() - began))
                except grpc.RpcError as error:
                    failures.append(error.code().name)
                count += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(args.steady_seconds)
        reload_start = time.perf_counter()
        shutil.copytree(base / "1", base / ".2.tmp")
        (base / ".2.tmp").rename(base / "2")
        deadline = reload_start + args.timeout
        while "version 1 unloaded" not in server.log() and time.perf_counter() < deadline:
            time.sleep(0.2)
        reload_end = time.perf_counter()
        time.sleep(2.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=300)
        server.stop()
    steady = [s for began, s in samples if began < reload_start]
    during = [s for began, s in samples if reload_start <= began <= reload_end]
    p99 = lambda values: float(np.percentile(values, 99)) if values else None  # noqa: E731
    return {
        "clients": args.clients,
        "reload_seconds": reload_end - reload_start,
        "steady_requests": len(steady),
        "reload_requests": len(during),
        "steady_p99_ms": 1000 * p99(steady),
        "reload_p99_ms": 1000 * p99(during) if during else None,
        "reload_p99_over_steady": p99(during) / p99(steady) if during and steady else None,
        "failed_requests": len(failures),
        "failures": sorted(set(failures)),
    }


def _keep(root: Path, phase: str, figures: dict) -> None:
    """Writes one phase's figures to the work folder, so a later phase's failure does not lose them."""
    (root / f"{phase}.json").write_text(json.dumps(figures, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    models = [name for name in args.models.split(",") if name]
    targets = [name for name in args.targets.split(",") if name]
    with work_dir(args.work_dir, "impasto-bench-startup-") as root:
        bare_rss = bare_import_rss()
        folders = export_all(models, targets, args.warmup_sizes, root)
        figures = {"benchmark": "startup", "models": models, "warmup_sizes": args.warmup_sizes,
                   "bare_import_tensorflow_rss_bytes": bare_rss}
        phases = args.phases.split(",")
        if "startup" in phases:
            figures["startup"] = startup_figures(folders, models, args, root, bare_rss)
            _keep(root, "startup", figures["startup"])
        if "first_request" in phases:
            figures["first_request"] = {target: first_request_figures(folder, models[0], args, root, target)
                                        for target, folder in folders.items()}
            _keep(root, "first_request", figures["first_request"])
        if "reload" in phases:
            common.log(f"reload under {args.clients} clients ({targets[0]} export) ...")
            figures["reload"] = reload_figures(folders[targets[0]], models[0], args, root)
        figures["environment"] = common.environment()
    common.print_json(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
