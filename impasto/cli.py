"""The `impasto` command: one entry point that dispatches to each package's CLI module.

Exit codes: 0 success, 1 internal failure, 2 bad input (a missing or corrupt
file, an invalid flag value), 130 interrupted.
"""

import argparse
import importlib
import os
import sys

SUBCOMMANDS = {
    "stylize": ("impasto.model.cli", "Stylize an image (optimization or a feed-forward model)."),
    "train": ("impasto.training.cli", "Train a feed-forward model for one style."),
    "export": ("impasto.export.cli", "Export a trained model as a TensorFlow Serving SavedModel."),
    "serve": ("impasto.serving.server_cli", "Serve exported models over gRPC and REST, like tensorflow_model_server."),
    "client": ("impasto.serving.client_cli", "Stylize files through a running server."),
    "batch": ("impasto.batch.cli", "Stylize a whole collection on Apache Beam (resumable, any runner)."),
    "prepare-data": ("impasto.training.prepare_cli", "Decode and resize training photos into TFRecord shards (Beam)."),
}
EXIT_BAD_INPUT = 2
WITHOUT_TENSORFLOW = {"batch"}
"""Commands that start no TensorFlow themselves (Beam's workers do): a finished batch resumes in seconds."""


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow with its start-up log lines (CUDA probing, oneDNN notes) kept off the terminal.

    Those lines are written by native code before any log level applies, so
    stderr is pointed at /dev/null for the import alone. Set IMPASTO_TF_LOGS=1
    to see them.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("IMPASTO_TF_LOGS"):
        return
    saved_stderr = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow

            tensorflow.config.list_physical_devices()  # Device probing logs its own lines.
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)


def main(argv: list[str] | None = None) -> int:
    """Parses the subcommand and hands the rest of the arguments to its module's `run(argv)`."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="impasto", description="Neural style transfer with TensorFlow.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in SUBCOMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else EXIT_BAD_INPUT
    if argv[0] == "--version":
        from impasto import __version__

        print(__version__)
        return 0
    if argv[0] not in SUBCOMMANDS:
        parser.error(f"unknown command {argv[0]!r}; choose one of {', '.join(SUBCOMMANDS)}")
    if argv[0] == "serve":  # Before TensorFlow (or anything) starts a thread; see impasto.serving.memory.
        from impasto.serving.memory import tune_malloc

        tune_malloc()
    if argv[0] not in WITHOUT_TENSORFLOW:
        _import_tensorflow_quietly()
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    try:
        return module.run(argv[1:])
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
