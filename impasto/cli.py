"""The `impasto` command: one entry point that dispatches to each package's CLI module.

Exit codes: 0 success, 1 internal failure, 2 bad input (a missing or corrupt
file, an invalid flag value), 130 interrupted.
"""

import argparse
import contextlib
import importlib
import sys
from dataclasses import dataclass

from impasto.model.cli_errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED
from impasto.model.tensorflow_import import import_tensorflow_quietly


@dataclass(frozen=True)
class Subcommand:
    """One `impasto` subcommand.

    Attributes:
        flags: module whose `build_parser()` parses its flags; it imports no TensorFlow (nor Beam), so
            `--help` and flag errors answer before either is loaded.
        runner: module whose `run(argv)` runs it.
        summary: one line for `impasto --help`.
        beam_options: arguments after the first ``--`` are Beam pipeline options, not the command's own.
        starts_tensorflow: False for a command that starts no TensorFlow itself (Beam's workers do), so that
            a finished batch resumes in seconds.
    """

    flags: str
    runner: str
    summary: str
    beam_options: bool = False
    starts_tensorflow: bool = True


SUBCOMMANDS = {
    "stylize": Subcommand("impasto.model.stylize_flags", "impasto.model.cli",
                          "Stylize an image (optimization or a feed-forward model)."),
    "train": Subcommand("impasto.training.train_flags", "impasto.training.cli",
                        "Train a feed-forward model for one style."),
    "export": Subcommand("impasto.export.export_flags", "impasto.export.cli",
                         "Export a trained model for TensorFlow Serving or as LiteRT (.tflite) files."),
    "serve": Subcommand("impasto.serving.serve_flags", "impasto.serving.server_cli",
                        "Serve exported models over gRPC and REST, like tensorflow_model_server."),
    "client": Subcommand("impasto.serving.client_flags", "impasto.serving.client_cli",
                         "Stylize files through a running server."),
    "batch": Subcommand("impasto.serving.batch.batch_flags", "impasto.serving.batch.cli",
                        "Stylize a whole collection on Apache Beam (resumable, any runner).", beam_options=True,
                        starts_tensorflow=False),
    "prepare-data": Subcommand("impasto.training.prepare_flags", "impasto.training.prepare_cli",
                               "Decode and resize training photos into TFRecord shards (Beam).", beam_options=True),
}


def _use_xla_cache(serve_argv: list[str]) -> None:
    """Applies `impasto serve --xla_cache_dir` before TensorFlow reads TF_XLA_FLAGS (see impasto.serving.xla)."""
    from impasto.model.errors import InvalidInputError
    from impasto.serving import xla

    directory = xla.cache_dir_in(serve_argv)
    if directory:
        with contextlib.suppress(InvalidInputError):  # `impasto serve` reports it (exit 2) when it checks its flags.
            xla.use_compilation_cache(directory)


def main(argv: list[str] | None = None) -> int:
    """Parses the subcommand and hands the rest of the arguments to its module's `run(argv)`."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="impasto", description="Neural style transfer with TensorFlow.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, subcommand in SUBCOMMANDS.items():
        commands.add_parser(name, help=subcommand.summary, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else EXIT_BAD_INPUT
    if argv[0] == "--version":
        from impasto import __version__

        print(__version__)
        return 0
    if argv[0] not in SUBCOMMANDS:
        parser.error(f"unknown command {argv[0]!r}; choose one of {', '.join(SUBCOMMANDS)}")
    if argv[0] == "serve":  # Before numpy, TensorFlow or anything starts a thread; see impasto.serving.memory.
        from impasto.serving.memory import tune_malloc

        tune_malloc()
        _use_xla_cache(argv[1:])
    subcommand = SUBCOMMANDS[argv[0]]
    own_args = argv[1:]
    if subcommand.beam_options:  # Beam's pipeline options, after `--`, are not the command's own.
        from impasto.serving.batch.batch_flags import split_beam_args

        own_args = split_beam_args(own_args)[0]
    importlib.import_module(subcommand.flags).build_parser().parse_args(own_args)  # --help, flag errors: exit here.
    if subcommand.starts_tensorflow:
        import_tensorflow_quietly()
    module = importlib.import_module(subcommand.runner)
    try:
        return module.run(argv[1:])
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
