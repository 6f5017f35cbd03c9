"""`impasto batch`: stylize a whole collection with Apache Beam (DirectRunner on every core, or any runner).

Outputs go under --output at each input's relative path (per model, with
--assign each and several models), written whole. DIR/manifest.jsonl records
what was done and DIR/dead_letter.jsonl what could not be (with the reason);
running the same command again does only what is left. Arguments after `--`
are Beam pipeline options, e.g. `-- --runner=FlinkRunner --flink_master=HOST:8081`
(see docs/batch.md).

Only the flags live here, with nothing that imports Beam or TensorFlow, so that `impasto batch --help`
and flag errors answer at once; `impasto.serving.batch.cli` runs the command.
"""

import argparse

from impasto.model import image_io
from impasto.serving.batch.job import ASSIGN_MODES, FORMATS


def beam_command_parser(prog: str, doc: str, usage: str, output_help: str) -> argparse.ArgumentParser:
    """A parser for a Beam command: its --input and --output, BEAM_PIPELINE_OPTIONS after ``--`` in the usage."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0],
                                     usage=f"%(prog)s {usage} [-- BEAM_PIPELINE_OPTIONS]")
    parser.add_argument("--input", required=True, help="a folder, or a Beam glob ('photos/**/*.jpg'; ** spans folders)")
    parser.add_argument("--output", required=True, help=f"{output_help} (local, gs://, s3://)")
    return parser


def add_max_pixels(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-pixels", type=int, default=image_io.DEFAULT_MAX_PIXELS,
                        help="dead-letter inputs whose header claims more pixels (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = beam_command_parser("impasto batch", __doc__, "--input GLOB --output DIR --model NAME[,NAME...] [options]",
                                 "output folder")
    parser.add_argument("--model", required=True,
                        help="comma-separated: bundled names, training run directories, .npz bundles, SavedModels")
    parser.add_argument("--assign", choices=ASSIGN_MODES, default="each",
                        help="with several models: each (all of them), random (one, seeded), hash (one, by path)")
    parser.add_argument("--size", type=int, help="resize each input to this long side (default: its own size)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="png", help="output format (default png)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --assign random")
    add_max_pixels(parser)
    parser.add_argument("--flush-seconds", type=float, default=5.0,
                        help="how often each worker records progress: the most work a killed job loses (default 5)")
    return parser


def split_beam_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """impasto's arguments, and Beam's (after the first ``--``)."""
    if "--" in argv:
        index = argv.index("--")
        return argv[:index], argv[index + 1:]
    return argv, []
