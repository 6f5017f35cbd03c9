"""`impasto batch`: stylize a whole collection with Apache Beam (its flags and usage:
`impasto.serving.batch.batch_flags`)."""

import sys

from impasto.model.cli_errors import EXIT_OK, reports_errors
from impasto.serving.batch.batch_flags import build_parser, split_beam_args
from impasto.serving.batch.job import BatchJob
from impasto.serving.batch.pipeline import run_batch


@reports_errors
def run(argv: list[str]) -> int:
    own, beam_args = split_beam_args(argv)
    args = build_parser().parse_args(own)
    models = tuple(name.strip() for name in args.model.split(",") if name.strip())
    job = BatchJob(input=args.input, output_dir=args.output, models=models, assign=args.assign, size=args.size,
                   format=args.format, seed=args.seed, max_pixels=args.max_pixels, flush_seconds=args.flush_seconds)
    summary = run_batch(job, beam_args)
    if summary.skipped_run:
        print(f"nothing to do: every input is already recorded in {args.output}", file=sys.stderr)
    else:
        print(f"wrote {summary.written} images to {args.output}; {summary.dead_letters} files dead-lettered"
              + (" (see dead_letter.jsonl)" if summary.dead_letters else ""), file=sys.stderr)
    return EXIT_OK
