"""`impasto serve`: serves exported models over gRPC and REST, with tensorflow_model_server's flag names.

Starts once every configured model's wanted versions have been tried, then
polls for new and removed versions. SIGTERM (or Ctrl-C) stops accepting
requests, lets those in flight finish and exits 0.

It listens on 127.0.0.1 unless --host says otherwise. TLS (--ssl_config_file,
or --ssl_cert_file/--ssl_key_file[/--ssl_client_ca_file] for mutual TLS)
covers the gRPC and the REST port. Model base paths, from the config file or a
HandleReloadConfigRequest, must lie inside --model_root.
"""

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from impasto.export.tfserving_config import BatchingConfig
from impasto.export.tfserving_protos import parse_text_proto
from impasto.model.cli_errors import EXIT_OK, reports_errors
from impasto.model.errors import InvalidInputError
from impasto.serving import config as config_files
from impasto.serving import tls, xla
from impasto.serving.grpc_server import build_server, set_serving
from impasto.serving.limits import Limits
from impasto.serving.memory import release_free_memory
from impasto.serving.metrics import Metrics
from impasto.serving.predictor import Predictor
from impasto.serving.registry import Registry, initial_load_threads
from impasto.serving.rest_server import RestServer
from impasto.serving.servable import Servable
from impasto.serving.serve_flags import build_parser

LOG = logging.getLogger("impasto.serving")


def _model_config(args: argparse.Namespace):
    """(ModelServerConfig, model root) from the flags."""
    if bool(args.model_config_file) == bool(args.model_base_path):
        raise InvalidInputError("give exactly one of --model_config_file and --model_base_path")
    if args.model_config_file:
        config = parse_text_proto(args.model_config_file, "ModelServerConfig")
        return config, Path(args.model_root or Path(args.model_config_file).parent).resolve()
    if not Path(args.model_base_path).is_dir():
        raise InvalidInputError(f"--model_base_path {args.model_base_path}: no such directory")
    base_path = Path(args.model_base_path).resolve()
    return (config_files.single_model_config(args.model_name, str(base_path)),
            Path(args.model_root).resolve() if args.model_root else base_path)


def _watch_config_file(path: str, interval: float, registry: Registry, stop: threading.Event) -> None:
    """Re-reads the model config file every `interval` seconds and applies it when its text changes."""
    last = Path(path).read_text()
    while not stop.wait(interval):
        try:
            text = Path(path).read_text()
            if text != last:
                registry.reload_config(parse_text_proto(path, "ModelServerConfig"))
                LOG.info("applied the changed model config %s", path)
            last = text
        except (OSError, InvalidInputError) as error:
            LOG.error("model config %s not applied: %s", path, error)
            last = text


@reports_errors
def run(argv: list[str]) -> int:
    """Runs the server until SIGTERM or SIGINT; returns 0 after a clean drain."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s impasto serve: %(message)s")
    if args.num_load_threads < 0:
        raise InvalidInputError("--num_load_threads must be 0 (one load at a time) or positive")
    for flag in ("max_request_bytes", "max_request_batch_size", "max_image_pixels", "max_concurrent_requests"):
        if getattr(args, flag) < 0:
            raise InvalidInputError(f"--{flag} must be 0 (no limit) or positive")
    model_config, model_root = _model_config(args)
    batching = BatchingConfig.from_file(args.batching_parameters_file) if args.enable_batching else None
    metrics_path = config_files.prometheus_path(args.monitoring_config_file)
    limits = Limits(args.max_request_bytes, args.max_request_batch_size, args.request_timeout_seconds,
                    args.max_image_pixels)
    tls_files = tls.from_flags(args.ssl_config_file, args.ssl_cert_file, args.ssl_key_file, args.ssl_client_ca_file)
    ssl_context = tls_files.ssl_context() if tls_files else None
    metrics = Metrics()
    if args.xla_cache_dir:
        LOG.info("XLA compilation cache: TF_XLA_FLAGS=%s", xla.use_compilation_cache(args.xla_cache_dir))
    if args.disable_xla:
        xla.disable_compilation()
        LOG.info("XLA compilation disabled")

    def load(name: str, version: int, path: Path) -> Servable:
        servable = Servable(name, version, path, batching, limits.max_batch_size or None,
                            on_batch=lambda size: metrics.record_batch(name, version, size),
                            prefer_tflite_model=args.prefer_tflite_model)
        release_free_memory()
        LOG.info("model %s version %d: loaded in %.1f s, warmed up in %.1f s (%d requests), from its %s", name,
                 version, servable.load_seconds, servable.warmup_seconds, servable.warmup_count, servable.form)
        return servable

    stop = threading.Event()  # Set by SIGTERM / SIGINT, even while the first versions load.
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stop.set())
    registry = Registry(model_config, load, model_root, args.num_load_threads, initial_load_threads())
    registry.poll()
    predictor = Predictor(registry, metrics, limits)
    server, health, port = build_server(predictor, f"{args.host}:{args.port}", args.grpc_max_threads,
                                        tls_files.grpc_credentials() if tls_files else None,
                                        args.max_concurrent_requests, args.grpc_socket_path,
                                        config_files.parse_channel_arguments(args.grpc_channel_arguments))
    rest = None
    if args.rest_api_port:
        try:
            rest = RestServer((args.host, args.rest_api_port), predictor, metrics_path, ssl_context,
                              args.max_concurrent_requests)
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
    LOG.info("serving models %s: gRPC on %s:%d%s%s", ", ".join(registry.model_names()), args.host, port,
             f", REST on {args.host}:{args.rest_api_port}" if rest else "", " (TLS)" if tls_files else "")

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
