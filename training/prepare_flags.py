"""`impasto prepare-data`: decode and resize training photos into TFRecord shards, on Apache Beam.

Writes PREFIX-SSSSS-of-NNNNN.tfrecord (train on them with `impasto train --data
'PREFIX-*.tfrecord'`) and PREFIX-dead_letter.jsonl (files that could not be
decoded, with the reason). Arguments after `--` are Beam pipeline options
(default: the DirectRunner on every core; see docs/batch.md).

Only the flags live here, with nothing that imports Beam or TensorFlow, so that `impasto prepare-data --help`
and flag errors answer at once; `impasto.training.prepare_cli` runs the command.
"""

import argparse

from impasto.serving.batch.batch_flags import add_max_pixels, beam_command_parser


def build_parser() -> argparse.ArgumentParser:
    parser = beam_command_parser("impasto prepare-data", __doc__,
                                 "--input GLOB --output PREFIX --shards N [--size 256]",
                                 "shard prefix")
    parser.add_argument("--shards", type=int, required=True, help="number of shards: at least one per training worker")
    parser.add_argument("--size", type=int, default=256,
                        help="shrink photos whose short side is longer to this (default 256, the training crop size)")
    add_max_pixels(parser)
    return parser
