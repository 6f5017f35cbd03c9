"""`impasto client`: stylizes image files or whole directories through a running server, concurrently.

Only the flags live here, with nothing that imports TensorFlow, so that `impasto client --help` and flag
errors answer at once; `impasto.serving.client_cli` runs the command.
"""

import argparse

from impasto.export import keys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="impasto client", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("inputs", nargs="+", metavar="IN", help="image files and/or directories of images")
    add("--out", required=True, help="output directory")
    add("--server", required=True, help="HOST:PORT of the gRPC server")
    add("--model", required=True, help="model name")
    add("--signature", default=keys.SERVING_DEFAULT,
        help=f"signature: {keys.SERVING_DEFAULT}, {keys.SERVING_NOXLA} or {keys.STYLIZE_CONTROLS}")
    pin = parser.add_mutually_exclusive_group()
    pin.add_argument("--version", type=int, help="model version (default: the latest)")
    pin.add_argument("--label", default="", help="model version label")
    add("--strength", type=float, help=f"0..1 style strength ({keys.STYLIZE_CONTROLS} only)")
    add("--preserve-color", action="store_true", help=f"keep the photo's colours ({keys.STYLIZE_CONTROLS} only)")
    add("--concurrency", type=int, default=8, help="requests in flight at once (default 8)")
    add("--timeout", type=float, default=60.0, help="seconds per request attempt (default 60)")
    add("--retries", type=int, default=3, help="retries on UNAVAILABLE, with exponential backoff (default 3)")
    add("--tls", action="store_true", help="use TLS (implied by the certificate flags)")
    add("--ca-cert", help="PEM file of the CA that signed the server's certificate")
    add("--client-cert", help="PEM file of this client's certificate (mutual TLS)")
    add("--client-key", help="PEM file of this client's private key (mutual TLS)")
    add("--server-name", help="name to check the server's certificate against")
    add("--no-progress", action="store_true", help="no progress bar")
    return parser
