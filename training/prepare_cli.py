"""`impasto prepare-data`: decode and resize training photos into TFRecord shards, on Apache Beam.

Writes PREFIX-SSSSS-of-NNNNN.tfrecord (train on them with `impasto train --data
'PREFIX-*.tfrecord'`) and PREFIX-dead_letter.jsonl (files that could not be
decoded, with the reason). Arguments after `--` are Beam pipeline options
(default: the DirectRunner on every core; see docs/batch.md).
"""

import argparse
import sys

from impasto.model.cli_errors import EXIT_OK, reports_errors
from impasto.serving.batch.cli import add_max_pixels, beam_command_parser, split_beam_args
from impasto.serving.batch.records import DEAD_LETTER
from impasto.training.prepare import PrepareJob, run_prepare
from impasto.training.records import RECORD_SUFFIX


def build_parser() -> argparse.ArgumentParser:
    parser = beam_command_parser("impasto prepare-data", __doc__,
                                 "--input GLOB --output PREFIX --shards N [--size 256]",
                                 "shard prefix")
    parser.add_argument("--shards", type=int, required=True, help="number of shards: at least one per training worker")
    parser.add_argument("--size", type=int, default=256,
                        help="shrink photos whose short side is longer to this (default 256, the training crop size)")
    add_max_pixels(parser)
    return parser


@reports_errors
def run(argv: list[str]) -> int:
    own, beam_args = split_beam_args(argv)
    args = build_parser().parse_args(own)
    job = PrepareJob(input=args.input, output_prefix=args.output, shards=args.shards, size=args.size,
                     max_pixels=args.max_pixels)
    run_prepare(job, beam_args)
    print(f"wrote {args.output}-*{RECORD_SUFFIX} ({args.shards} shards); "
          f"bad files in {args.output}-{DEAD_LETTER}.jsonl", file=sys.stderr)
    return EXIT_OK
