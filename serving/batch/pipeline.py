"""The `impasto batch` pipeline: match -> plan (skip what is done) -> read and decode -> RunInference -> write.

    inputs (MatchFiles) ──┐
                          ├─ group by output name ─ plan ─ read+decode ─ RunInference ─ encode+write ─ manifest
    earlier records ──────┘                                     └─ dead letters (bad files)

Grouping by the output name (the input's relative path without its suffix)
joins each input with its earlier records, so a rerun skips what is done, and
finds inputs that would write the same output (``a.jpg`` and ``a.png``): those
keep their suffix (``a.jpg.png``, ``a.png.png``). The grouping also spreads the
work over every worker.
"""

import os
import time
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio
from apache_beam.ml.inference.base import PredictionResult, RunInference
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from impasto.model import image_io
from impasto.model.errors import InvalidInputError
from impasto.model.files import pause_for_crash_test
from impasto.serving.batch import paths, records
from impasto.serving.batch.handler import StylizeModelHandler, StylizeRequest
from impasto.serving.batch.job import FORMATS, BatchJob

WRITE_DELAY_ENV = "IMPASTO_BATCH_WRITE_DELAY"
"""Crash-test hook: seconds to wait after each output is written (a test kills a real job midway)."""


@dataclass(frozen=True)
class WorkItem:
    """One input file and the (model label, output path) pairs still to do for it."""

    input: str
    targets: tuple[tuple[str, str], ...]


def _output_stem(relative: str) -> str:
    return os.path.splitext(relative)[0]


def output_path(job: BatchJob, relative: str, label: str, keep_suffix: bool) -> str:
    """Where one input's result for one model goes: under the model's own folder when every model
    stylizes every input; with the input's suffix kept when another input has the same stem."""
    name = (relative if keep_suffix else _output_stem(relative)) + "." + job.format
    if job.assign == "each" and len(job.labels) > 1:
        return paths.join(job.output_dir, label, name)
    return paths.join(job.output_dir, name)


def plan(job: BatchJob, base: str, group: tuple[str, list[tuple[str, object]]]):
    """Turns one output name's inputs and earlier records into the work still to do.

    Args:
        job: the job.
        base: what input paths are relative to.
        group: (output stem, [("input", path) | ("manifest", record) | ("dead_letter", record)]).

    Yields:
        WorkItem for each input with something left to do.
    """
    _, values = group
    inputs = sorted({value for kind, value in values if kind == "input"})
    done = {records.record_key(value) for kind, value in values if kind == records.MANIFEST}
    dead = {value["input"] for kind, value in values if kind == records.DEAD_LETTER}
    for path in inputs:
        if path in dead:
            continue
        relative = paths.relative_path(path, base)
        targets = tuple((label, output_path(job, relative, label, keep_suffix=len(inputs) > 1))
                        for label in job.assigned(relative) if (path, label) not in done)
        if targets:
            yield WorkItem(path, targets)


class ReadAndDecode(beam.DoFn):
    """Reads and decodes each input once (impasto's decoder and limits); bad files go to the dead letters."""

    def __init__(self, job: BatchJob):
        self.job = job

    def process(self, item: WorkItem):
        started = time.perf_counter()
        try:
            image = decode_input(item.input, self.job.max_pixels)
        except InvalidInputError as error:
            dead_letter = {"input": item.input, "model": None, "reason": str(error)}
            yield beam.pvalue.TaggedOutput(records.DEAD_LETTER, dead_letter)
            return
        if self.job.size:
            image = image_io.resize_long_side(image, self.job.size)
        milliseconds = (time.perf_counter() - started) * 1000.0
        for label, output in item.targets:
            yield StylizeRequest(item.input, output, label, image, milliseconds)


class EncodeAndWrite(beam.DoFn):
    """Encodes each result and writes it whole; yields its manifest record."""

    def __init__(self, job: BatchJob):
        self.job = job

    def process(self, result: PredictionResult):
        started = time.perf_counter()
        request: StylizeRequest = result.example
        paths.write_bytes_atomically(request.output, image_io.encode_image(result.inference, FORMATS[self.job.format]))
        height, width = result.inference.shape[:2]
        milliseconds = request.milliseconds + (time.perf_counter() - started) * 1000.0
        pause_for_crash_test(WRITE_DELAY_ENV, request.output)
        yield {"input": request.input, "output": request.output, "model": request.model, "size": [width, height],
               "ms": round(milliseconds, 1)}


def _tag(kind: str):
    return lambda value: (kind, value)


def match_inputs(pipeline: beam.Pipeline, text: str) -> beam.PCollection:
    """The input files an --input value names (a folder: its image files), as paths."""
    pattern, base, folder = paths.input_pattern(text)
    return (pipeline
            | "Match" >> fileio.MatchFiles(pattern, empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
            | "Paths" >> beam.Map(lambda metadata: metadata.path)
            | "Images" >> beam.Filter(
                lambda path: not folder or paths.wanted_in_folder(paths.relative_path(path, base))))


def decode_input(path: str, max_pixels: int) -> np.ndarray:
    """Reads and decodes one input file: float32 [H, W, 3] in [0, 255].

    Raises:
        InvalidInputError: unreadable, not an accepted image, or over `max_pixels`.
    """
    return image_io.decode_image_bytes(paths.read_bytes(path), max_pixels, what=path)


def check_input_matches(text: str) -> None:
    """Raises InvalidInputError when an --input value matches no file."""
    pattern, _, _ = paths.input_pattern(text)
    if not paths.matches_any(pattern):
        raise InvalidInputError(f"--input {text}: no file matches {pattern}")


def build(pipeline: beam.Pipeline, job: BatchJob, handler: StylizeModelHandler) -> None:
    """Adds the batch job's transforms to `pipeline`."""
    _, base, _ = paths.input_pattern(job.input)
    inputs = (match_inputs(pipeline, job.input)
              | "KeyInputs" >> beam.Map(lambda path: (_output_stem(paths.relative_path(path, base)), ("input", path))))
    earlier = []
    for kind in (records.MANIFEST, records.DEAD_LETTER):
        earlier.append(pipeline
                       | f"{kind}Files" >> beam.Create(records.record_files(job.output_dir, kind))
                       | f"Read{kind}" >> beam.FlatMap(records.read_records)
                       | f"Key{kind}" >> beam.Map(
                           lambda record, kind=kind: (_output_stem(paths.relative_path(record["input"], base)),
                                                      (kind, record))))
    work = ((inputs, *earlier)
            | "Join" >> beam.Flatten()
            | "ByOutputName" >> beam.GroupByKey()
            | "Plan" >> beam.FlatMap(lambda group: plan(job, base, group)))
    decoded = work | "ReadAndDecode" >> beam.ParDo(ReadAndDecode(job)).with_outputs(records.DEAD_LETTER,
                                                                                     main="images")
    manifest = (decoded.images
                | "Stylize" >> RunInference(handler)
                | "EncodeAndWrite" >> beam.ParDo(EncodeAndWrite(job)))
    for kind, found in ((records.MANIFEST, manifest), (records.DEAD_LETTER, decoded[records.DEAD_LETTER])):
        found | f"Record{kind}" >> beam.ParDo(records.WriteRecordParts(job.output_dir, kind, job.flush_seconds))


def pipeline_options(beam_args: list[str]) -> tuple[PipelineOptions, int | None]:
    """Beam's options from the arguments after ``--``; the DirectRunner, multi-process on every core, by default.

    Returns:
        (options, TensorFlow threads per worker: cores / workers on the local multi-process runner, else None).
    """
    if not any(arg.startswith("--runner") or arg.startswith("--default_sdk_harness_log_level") for arg in beam_args):
        beam_args = ["--default_sdk_harness_log_level=ERROR", *beam_args]  # Local workers: only errors on the terminal.
    options = PipelineOptions(beam_args)
    standard, direct = options.view_as(StandardOptions), options.view_as(DirectOptions)
    if standard.runner is None:
        standard.runner = "DirectRunner"
        if not any(arg.startswith("--direct_running_mode") for arg in beam_args):
            direct.direct_running_mode = "multi_processing"
        if not any(arg.startswith("--direct_num_workers") for arg in beam_args):
            direct.direct_num_workers = 0
    local_processes = standard.runner in ("DirectRunner", "direct") and direct.direct_running_mode == "multi_processing"
    if not local_processes:
        return options, None
    cores = os.cpu_count() or 1
    workers = direct.direct_num_workers or cores
    return options, max(1, cores // workers)


def remove_stale_temporaries(output_dir: str) -> int:
    """Deletes the temporary files a killed run left in a local output folder (``.NAME.*.tmp``)."""
    if not paths.is_local(output_dir) or not os.path.isdir(output_dir):
        return 0
    removed = 0
    for folder, _, names in os.walk(output_dir):
        for name in names:
            if name.startswith(".") and name.endswith(".tmp"):
                os.unlink(os.path.join(folder, name))
                removed += 1
    return removed


def everything_recorded(job: BatchJob) -> bool:
    """Whether an earlier run recorded every input (then no pipeline needs to start).

    Only checked when a manifest exists: it lists the inputs on this machine, as the pipeline would.
    """
    if not paths.exists(records.final_path(job.output_dir, records.MANIFEST)):
        return False
    pattern, base, folder = paths.input_pattern(job.input)
    done = {records.record_key(record) for path in records.record_files(job.output_dir, records.MANIFEST)
            for record in records.read_records(path)}
    dead = {record["input"] for path in records.record_files(job.output_dir, records.DEAD_LETTER)
            for record in records.read_records(path)}
    for path in paths.match(pattern):
        relative = paths.relative_path(path, base)
        if folder and not paths.wanted_in_folder(relative):
            continue
        if path not in dead and any((path, label) not in done for label in job.assigned(relative)):
            return False
    return True


@dataclass(frozen=True)
class BatchSummary:
    """What one run did: outputs written and files dead-lettered (this run and a killed one before it)."""

    written: int
    dead_letters: int
    skipped_run: bool


def run_batch(job: BatchJob, beam_args: list[str] = ()) -> BatchSummary:
    """Runs the job to the end (resuming an earlier one) and merges its records.

    Raises:
        InvalidInputError: the input matches no file.
    """
    check_input_matches(job.input)
    remove_stale_temporaries(job.output_dir)
    skipped_run = everything_recorded(job)
    if not skipped_run:
        options, threads = pipeline_options(list(beam_args))
        handler = StylizeModelHandler(job.labels, intra_op_threads=threads)
        with beam.Pipeline(options=options) as pipeline:
            build(pipeline, job, handler)
    written = records.merge_parts(job.output_dir, records.MANIFEST)
    dead = records.merge_parts(job.output_dir, records.DEAD_LETTER)
    return BatchSummary(written, dead, skipped_run)
