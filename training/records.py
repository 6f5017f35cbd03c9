"""Training photos as TFRecord shards: the record format, and the tf.data pipeline that reads them.

`impasto prepare-data` writes the shards (decoded by impasto's own decoder,
resized, PNG-encoded so no pixel changes again); `impasto train --data
'PREFIX-*.tfrecord'` reads them here. Under `tf.distribute`, each worker reads
its own shards (``files.shard(workers, index)``), interleaving several at once.

One record is a `tf.train.Example`:

    image   bytes  PNG, RGB uint8
    height  int64
    width   int64
    source  bytes  the photo's path, for tracing a record back to its file
"""

import tensorflow as tf

from impasto.model.errors import InvalidInputError
from impasto.training.config import TrainConfig
from impasto.training.data import random_crops

RECORD_SUFFIX = ".tfrecord"
_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
    "source": tf.io.FixedLenFeature([], tf.string),
}
INTERLEAVED_SHARDS = 4
"""Shards one worker reads at once."""
RECORD_SHUFFLE_BUFFER = 256


def is_record_pattern(text: str) -> bool:
    """Whether a --data value names TFRecord shards rather than a folder of photos."""
    return text.endswith(RECORD_SUFFIX)


def encode_record(png: bytes, height: int, width: int, source: str) -> bytes:
    """One serialized `tf.train.Example` (see the module docstring)."""
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
        "height": tf.train.Feature(int64_list=tf.train.Int64List(value=[height])),
        "width": tf.train.Feature(int64_list=tf.train.Int64List(value=[width])),
        "source": tf.train.Feature(bytes_list=tf.train.BytesList(value=[source.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_record(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """A serialized record -> {"image": float32 [H, W, 3] in [0, 255], "source": tf.string}."""
    parsed = tf.io.parse_single_example(serialized, _FEATURES)
    image = tf.cast(tf.io.decode_png(parsed["image"], channels=3), tf.float32)
    return {"image": image, "source": parsed["source"]}


def shard_files(pattern: str) -> list[str]:
    """The shards `pattern` matches, sorted.

    Raises:
        InvalidInputError: none.
    """
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise InvalidInputError(f"--data {pattern}: no TFRecord shards match (write them with impasto prepare-data)")
    return files


def worker_records(files: list[str], context: tf.distribute.InputContext, seed: int,
                   repeat: bool = True) -> tf.data.Dataset:
    """This worker's records, parsed: its own shards, shuffled, several read at once.

    Args:
        files: every shard (the same sorted list on every worker).
        context: which input pipeline this is, of how many (one per worker).
        seed: seeds the shard and record order.
        repeat: cycle forever (training) or read each of this worker's shards once.

    Raises:
        InvalidInputError: fewer shards than workers.
    """
    if len(files) < context.num_input_pipelines:
        raise InvalidInputError(f"{len(files)} TFRecord shards for {context.num_input_pipelines} workers: write at "
                                "least one shard per worker (impasto prepare-data --shards)")
    shards = tf.data.Dataset.from_tensor_slices(files).shard(context.num_input_pipelines, context.input_pipeline_id)
    shards = shards.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        shards = shards.repeat()
    records = shards.interleave(tf.data.TFRecordDataset, cycle_length=INTERLEAVED_SHARDS,
                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    records = records.shuffle(RECORD_SHUFFLE_BUFFER, seed=seed)
    return records.map(parse_record, num_parallel_calls=tf.data.AUTOTUNE)


def training_dataset(files: list[str], context: tf.distribute.InputContext, size: int, global_batch_size: int,
                     seed: int, blur_fraction: float = 0.0,
                     max_scale: float = TrainConfig.max_short_side_scale,
                     aspects: tuple[float, ...] = TrainConfig.crop_aspects) -> tf.data.Dataset:
    """Endless float32 [per-replica batch, height, width, 3] batches in [0, 255] of random crops and flips
    (`impasto.training.data.random_crop`, blurring `blur_fraction` of them, short sides scaled up to
    `max_scale` crops), each batch of one of the `aspects` in turn (`impasto.training.data.random_crops`).

    For `tf.distribute.Strategy.distribute_datasets_from_function`: `context` says which
    worker this is and how the global batch splits over its replicas.
    """
    images = worker_records(files, context, seed + context.input_pipeline_id).map(lambda record: record["image"])
    batch = context.get_per_replica_batch_size(global_batch_size)
    crops = random_crops(images, size, seed + context.input_pipeline_id, blur_fraction, max_scale, aspects, batch)
    return crops.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
