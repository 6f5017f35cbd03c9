"""`impasto prepare-data`'s Beam pipeline: photos -> decoded, resized PNG records in TFRecord shards.

    match -> spread over workers -> read, decode (impasto's decoder and limits), shrink -> record -> N shards
                                                 └─ dead letters (bad files, with the reason)

Shards are ``PREFIX-SSSSS-of-NNNNN.tfrecord`` (Beam writes them whole, at the
end), read by `impasto train --data 'PREFIX-*.tfrecord'`; the dead letters are
``PREFIX-dead_letter.jsonl``.
"""

import json
from dataclasses import dataclass

import apache_beam as beam

from impasto.model import image_io
from impasto.model.errors import InvalidInputError
from impasto.serving.batch.pipeline import check_input_matches, decode_input, match_inputs, pipeline_options
from impasto.serving.batch.records import DEAD_LETTER
from impasto.training import records


@dataclass(frozen=True)
class PrepareJob:
    """What `impasto prepare-data` does.

    Attributes:
        input: a Beam glob or a folder of photos.
        output_prefix: shards go to PREFIX-SSSSS-of-NNNNN.tfrecord.
        shards: how many shards (at least one per training worker).
        size: photos whose short side is longer are shrunk to it (the training crop size; smaller ones are kept).
        max_pixels: dead-letter photos whose header claims more pixels.
    """

    input: str
    output_prefix: str
    shards: int
    size: int = 256
    max_pixels: int = image_io.DEFAULT_MAX_PIXELS

    def __post_init__(self):
        for name in ("shards", "size", "max_pixels"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")


def shrink_short_side(image, size: int):
    """float32 [H, W, 3] -> short side `size` when it is longer (aspect kept); smaller images unchanged."""
    height, width = image.shape[:2]
    if min(height, width) <= size:
        return image
    scale = size / min(height, width)
    return image_io.resize_image(image, max(size, round(height * scale)), max(size, round(width * scale)))


class DecodeToRecord(beam.DoFn):
    """Path -> serialized record; bad files -> dead-letter JSON lines."""

    def __init__(self, job: PrepareJob):
        self.job = job

    def process(self, path: str):
        try:
            image = shrink_short_side(decode_input(path, self.job.max_pixels), self.job.size)
        except InvalidInputError as error:
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, json.dumps({"input": path, "reason": str(error)}))
            return
        png = image_io.encode_image(image, "PNG")
        yield records.encode_record(png, image.shape[0], image.shape[1], path)


def build(pipeline: beam.Pipeline, job: PrepareJob) -> None:
    """Adds the job's transforms to `pipeline`."""
    decoded = (match_inputs(pipeline, job.input)
               | "Spread" >> beam.Reshuffle()
               | "Decode" >> beam.ParDo(DecodeToRecord(job)).with_outputs(DEAD_LETTER, main="records"))
    decoded.records | "WriteShards" >> beam.io.WriteToTFRecord(job.output_prefix, num_shards=job.shards,
                                                              file_name_suffix=records.RECORD_SUFFIX)
    decoded[DEAD_LETTER] | "WriteDeadLetters" >> beam.io.WriteToText(
        f"{job.output_prefix}-{DEAD_LETTER}", file_name_suffix=".jsonl", shard_name_template="")


def run_prepare(job: PrepareJob, beam_args: list[str] = ()) -> None:
    """Runs the job to the end.

    Raises:
        InvalidInputError: the input matches no file.
    """
    check_input_matches(job.input)
    options, _ = pipeline_options(list(beam_args))
    with beam.Pipeline(options=options) as pipeline:
        build(pipeline, job)
