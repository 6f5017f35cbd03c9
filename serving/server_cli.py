"""`impasto serve`: serves exported models over gRPC and REST, with tensorflow_model_server's flag names.

Starts once every configured model's wanted versions have been tried, then
polls for new and removed versions. SIGTERM (or Ctrl-C) stops accepting
requests, lets those in flight finish and exits 0.
"""

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

import grpc

from impasto.model.cli_errors import EXIT_OK, reports_errors
from impasto.model.errors import InvalidInputError
from impasto.serving import config as config_files
from impasto.serving.grpc_server import build_server, set_serving
from impasto.serving.metrics import Metrics
from impasto.serving.predictor import Limits, Predictor
from impasto.serving.registry import Registry
from impasto.serving.rest_server import RestServer
from impasto.serving.servable import Servable

LOG = logging.getLogger("impasto.serving")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="impasto serve", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--port", type=int, default=8500, help="gRPC port (default 8500)")
    add("--rest_api_port", type=int, default=8501, help="REST port; 0 turns REST off (default 8501)")
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    add("--model_config_file", help="ModelServerConfig text proto (models.config)")
    add("--model_config_file_poll_wait_seconds", type=float, default=0,
        help="re-read --model_config_file this often and apply changes (0: never)")
    add("--model_name", default="default", help="name of the one model when --model_base_path is used")
    add("--model_base_path", help="directory of numbered version directories of one model")
    add("--file_system_poll_wait_seconds", type=float, default=1.0,
        help="how often to look for new and removed versions (0: only at start; default 1)")
    add("--enable_batching", action="store_true", help="batch concurrent requests together")
    add("--batching_parameters_file", help="BatchingParameters text proto (batching_parameters.txt)")
    add("--monitoring_config_file", help="MonitoringConfig text proto enabling Prometheus metrics on the REST port")
    add("--ssl_config_file", help="SSLConfig text proto: serve gRPC over TLS")
    add("--grpc_max_threads", type=int, default=64, help="gRPC handler threads (default 64)")
    add("--max_request_bytes", type=int, default=Limits.max_request_bytes,
        help=f"largest request accepted, in bytes; 0: no limit (default {Limits.max_request_bytes})")
    add("--max_request_batch_size", type=int, default=Limits.max_batch_size,
        help=f"most images in one request; 0: no limit (default {Limits.max_batch_size})")
    add("--request_timeout_seconds", type=float, default=Limits.timeout_seconds,
        help="longest a request may wait before it runs, unless its own deadline is sooner; 0: no limit "
             f"(default {Limits.timeout_seconds:g})")
    add("--shutdown_grace_seconds", type=float, default=60.0,
        help="on SIGTERM, how long requests in flight may take to finish (default 60)")
    add("--verbose", action="store_true", help="log every REST request")
    return parser


def _model_config(args: argparse.Namespace):
    if bool(args.model_config_file) == bool(args.model_base_path):
        raise InvalidInputError("give exactly one of --model_config_file and --model_base_path")
    if args.model_config_file:
        return config_files.parse_text_proto(args.model_config_file, "ModelServerConfig")
    if not Path(args.model_base_path).is_dir():
        raise InvalidInputError(f"--model_base_path {args.model_base_path}: no such directory")
    return config_files.single_model_config(args.model_name, str(Path(args.model_base_path).resolve()))


def _credentials(path: str | None) -> grpc.ServerCredentials | None:
    if not path:
        return None
    ssl = config_files.parse_text_proto(path, "SSLConfig")
    if not ssl.server_key or not ssl.server_cert:
        raise InvalidInputError(f"{path}: server_key and server_cert are required")
    return grpc.ssl_server_credentials([(ssl.server_key.encode(), ssl.server_cert.encode())],
                                       root_certificates=ssl.custom_ca.encode() or None,
                                       require_client_auth=ssl.client_verify)


def _watch_config_file(path: str, interval: float, registry: Registry, stop: threading.Event) -> None:
    """Re-reads the model config file every `interval` seconds and applies it when its text changes."""
    last = Path(path).read_text()
    while not stop.wait(interval):
        try:
            text = Path(path).read_text()
            if text != last:
                registry.reload_config(config_files.parse_text_proto(path, "ModelServerConfig"))
                LOG.info("applied the changed model config %s", path)
            last = text
        except (OSError, InvalidInputError) as error:
            LOG.error("model config %s not applied: %s", path, error)
            last = text


@reports_errors
def run(argv: list[str]) -> int:
    """Runs the server until SIGTERM or SIGINT; returns 0 after a clean drain."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s impasto serve: %(message)s")
    model_config = _model_config(args)
    batching = config_files.BatchingOptions.from_file(args.batching_parameters_file) if args.enable_batching else None
    metrics_path = config_files.prometheus_path(args.monitoring_config_file)
    limits = Limits(args.max_request_bytes, args.max_request_batch_size, args.request_timeout_seconds)
    credentials = _credentials(args.ssl_config_file)
    metrics = Metrics()

    def load(name: str, version: int, path: Path) -> Servable:
        return Servable(name, version, path, batching, limits.max_batch_size or None,
                        on_batch=lambda size: metrics.record_batch(name, version, size))

    stop = threading.Event()  # Set by SIGTERM / SIGINT, even while the first versions load.
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stop.set())
    registry = Registry(model_config, load)
    registry.poll()
    predictor = Predictor(registry, metrics, limits)
    server, health, port = build_server(predictor, f"{args.host}:{args.port}", args.grpc_max_threads, credentials)
    rest = None
    if args.rest_api_port:
        try:
            rest = RestServer((args.host, args.rest_api_port), predictor, metrics_path)
        except OSError as error:
            raise InvalidInputError(f"cannot listen on {args.host}:{args.rest_api_port} for REST: {error}") from None
    elif metrics_path:
        LOG.warning("--monitoring_config_file enables Prometheus, but the REST API (which serves it) is off")

    server.start()
    if rest is not None:
        rest.start()
    set_serving(health, True)
    registry.start_polling(args.file_system_poll_wait_seconds)
    if args.model_config_file and args.model_config_file_poll_wait_seconds > 0:
        threading.Thread(target=_watch_config_file, daemon=True, args=(
            args.model_config_file, args.model_config_file_poll_wait_seconds, registry, stop)).start()
    LOG.info("serving models %s: gRPC on %s:%d%s", ", ".join(registry.model_names()), args.host, port,
             f", REST on {args.host}:{args.rest_api_port}" if rest else "")

    while not stop.wait(0.5):
        pass
    LOG.info("stopping: no new requests; waiting for those in flight")
    set_serving(health, False)
    grpc_done = server.stop(args.shutdown_grace_seconds)
    if rest is not None:
        rest.shutdown()
        rest.server_close()
    grpc_done.wait()
    registry.stop()
    LOG.info("stopped")
    return EXIT_OK
