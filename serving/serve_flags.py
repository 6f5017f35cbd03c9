"""`impasto serve`: serves exported models over gRPC and REST, with tensorflow_model_server's flag names.

Only the flags live here, with nothing that imports TensorFlow, so that `impasto serve --help` and flag
errors answer at once; `impasto.serving.server_cli` runs the command.
"""

import argparse

from impasto.serving.limits import Limits


def build_parser() -> argparse.ArgumentParser:
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
    add("--model_root", help="every model base path must resolve inside this directory, symlinks followed "
                             "(default: the config file's directory, or --model_base_path itself)")
    add("--file_system_poll_wait_seconds", type=float, default=1.0,
        help="how often to look for new and removed versions (0: only at start; default 1)")
    add("--num_load_threads", type=int, default=0,
        help="models loaded side by side when versions appear or the config changes; 0 loads them one after "
             "another (default 0, as TF Serving); at start-up, models load in 4 threads per CPU")
    add("--enable_batching", action="store_true", help="batch concurrent requests together")
    add("--batching_parameters_file", help="BatchingParameters text proto (batching_parameters.txt)")
    add("--monitoring_config_file", help="MonitoringConfig text proto enabling Prometheus metrics on the REST port")
    add("--ssl_config_file", help="SSLConfig text proto: serve gRPC and REST over TLS")
    add("--ssl_cert_file", help="PEM certificate (chain) of the server: serve gRPC and REST over TLS")
    add("--ssl_key_file", help="PEM private key of --ssl_cert_file")
    add("--ssl_client_ca_file", help="PEM CA certificates: require client certificates they signed (mutual TLS)")
    add("--grpc_max_threads", type=int, default=64, help="gRPC handler threads (default 64)")
    add("--grpc_socket_path", help="also serve gRPC (plaintext) on this Unix domain socket")
    add("--grpc_channel_arguments", default="", help="gRPC server options as name=value,name=value")
    add("--max_request_bytes", type=int, default=Limits.max_request_bytes,
        help=f"largest request accepted, in bytes; 0: no limit (default {Limits.max_request_bytes})")
    add("--max_request_batch_size", type=int, default=Limits.max_batch_size,
        help=f"most images in one request; 0: no limit (default {Limits.max_batch_size})")
    add("--max_image_pixels", type=int, default=Limits.max_image_pixels,
        help="refuse an encoded image whose header claims more pixels, before the model runs; 0: leave it to the "
             f"model's own limit (default {Limits.max_image_pixels})")
    add("--max_concurrent_requests", type=int, default=512,
        help="requests accepted at once on each port, running or queued; more are refused with RESOURCE_EXHAUSTED "
             "(REST 429); 0: no limit (default 512)")
    add("--request_timeout_seconds", type=float, default=Limits.timeout_seconds,
        help="longest a request may wait before it runs, unless its own deadline is sooner; 0: no limit "
             f"(default {Limits.timeout_seconds:g})")
    add("--shutdown_grace_seconds", type=float, default=60.0,
        help="on SIGTERM, how long requests in flight may take to finish (default 60)")
    xla_group = parser.add_mutually_exclusive_group()
    xla_group.add_argument("--xla_cache_dir", help="keep compiled XLA programs in this directory (TensorFlow's "
                           "persistent XLA cache), so a restart or another server sharing it skips the compile; "
                           "only GPU-target exports compile anything (default: no cache)")
    xla_group.add_argument("--disable_xla", action="store_true",
                           help="fail every XLA compile, as tensorflow_model_server does without "
                                "--xla_cpu_compilation_enabled / --xla_gpu_compilation_enabled")
    add("--prefer_tflite_model", action="store_true",
        help="serve a version's model.tflite (impasto export --tflite-model), when it has one, in LiteRT instead of "
             "its SavedModel, as tensorflow_model_server does with this flag: its signatures (stylize_tensor) only")
    add("--verbose", action="store_true", help="log every REST request")
    return parser
