"""`impasto prepare-data`: decode and resize training photos into TFRecord shards, on Apache Beam (its
flags and usage: `impasto.training.prepare_flags`)."""

import sys

from impasto.model.cli_errors import EXIT_OK, reports_errors
from impasto.serving.batch.batch_flags import split_beam_args
from impasto.serving.batch.records import DEAD_LETTER
from impasto.training.prepare import PrepareJob, run_prepare
from impasto.training.prepare_flags import build_parser
from impasto.training.records import RECORD_SUFFIX


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
