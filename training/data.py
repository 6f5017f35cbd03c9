"""The photo pipeline for training: files -> decode -> random crop and flip (and blur) -> batches.

Any folder of photos works (COCO train2014 is what the papers use): it is read
recursively for .jpg/.jpeg/.png/.webp/.gif/.bmp files, decoded by
`impasto.model.image_io` (grey, 16-bit, CMYK, transparency and GIF's first frame
are converted). Files that cannot be decoded, or whose header claims more than
`TrainConfig.max_pixels` pixels (`impasto train --max-pixels`; a decompression
bomb is refused before it is decoded), are skipped and counted, never fatal,
unless none of them can be: then the dataset fails with `InvalidInputError`
instead of searching forever.
"""

import hashlib
import math
import os
import threading
from pathlib import Path

import numpy as np
import tensorflow as tf

from impasto.model import image_io
from impasto.model.errors import InvalidInputError
from impasto.training.config import TrainConfig

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")

# Blur augmentation (`TrainConfig.blur_fraction`): a crop is blurred with a Gaussian whose standard
# deviation, in pixels of the crop, is drawn uniformly from this range; the kernel reaches 3 of the
# largest deviations each side.
BLUR_SIGMA_RANGE = (1.0, 8.0)
BLUR_RADIUS = 24
_BLUR_SEED_SALT = 1


def list_photos(folder: str | os.PathLike) -> list[str]:
    """Every photo file below `folder`, sorted.

    Raises:
        InvalidInputError: the folder does not exist or holds no photos.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(f"{folder}: not a directory of photos")
    photos = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
    if not photos:
        raise InvalidInputError(f"{folder}: no {'/'.join(PHOTO_SUFFIXES)} files found (searched recursively)")
    return photos


def split_validation(photos: list[str], count: int) -> tuple[list[str], list[str]]:
    """Splits off `count` validation photos, chosen by a hash of the file name (stable across runs)."""
    if count <= 0 or len(photos) <= count:
        return photos, []
    ranked = sorted(photos, key=lambda p: hashlib.sha256(Path(p).name.encode()).hexdigest())
    held_out = set(ranked[:count])
    return [p for p in photos if p not in held_out], [p for p in photos if p in held_out]


class SkippedFiles:
    """Thread-safe record of files the pipeline could not decode."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reasons: dict[str, str] = {}

    def add(self, path: str, reason: str) -> None:
        with self._lock:
            self.reasons[path] = reason

    def raise_if_none_decoded(self, total: int) -> None:
        """Raises when every one of `total` distinct files has been skipped.

        Raises:
            InvalidInputError: naming the first few files and why each failed.
        """
        with self._lock:
            if len(self.reasons) < total:
                return
            reasons = list(self.reasons.values())[:3]
        raise InvalidInputError(f"none of the {total} photos can be decoded: {'; '.join(reasons)}")

    @property
    def count(self) -> int:
        return len(self.reasons)


def _decoder(skipped: SkippedFiles, total: int, max_pixels: int):
    def decode(path_tensor: tf.Tensor):
        path = path_tensor.numpy().decode()
        try:
            return image_io.load_image(path, max_pixels=max_pixels), True
        except InvalidInputError as error:
            skipped.add(path, str(error))
        skipped.raise_if_none_decoded(total)
        return np.zeros([1, 1, 3], np.float32), False

    def decode_op(path):
        image, ok = tf.py_function(decode, [path], [tf.float32, tf.bool])
        image.set_shape([None, None, 3])
        ok.set_shape([])
        return image, ok

    return decode_op


def _decoded_ok(image: tf.Tensor, ok: tf.Tensor) -> tf.Tensor:
    return ok


def _drop_flag(image: tf.Tensor, ok: tf.Tensor) -> tf.Tensor:
    return image


def gaussian_blur(image: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    """A separable Gaussian blur with mirrored edges.

    Args:
        image: float32 [H, W, C], H and W static.
        sigma: float32 scalar, the standard deviation in pixels.

    Returns:
        float32 [H, W, C].
    """
    height, width, channels = image.shape
    radius = min(BLUR_RADIUS, height - 1, width - 1)
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    taps = tf.exp(-0.5 * tf.square(offsets / sigma))
    taps = tf.tile((taps / tf.reduce_sum(taps))[:, None, None], [1, channels, 1])  # [2r+1, C, 1]
    padded = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    down = tf.nn.depthwise_conv2d(padded, taps[:, None], [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(down, taps[None], [1, 1, 1, 1], "VALID")[0]


def crop_shape(size: int, aspect: float) -> tuple[int, int]:
    """(height, width) of a training crop of `aspect` (width / height) with the pixels of a `size` square.

    A square is `size` x `size`; other shapes have sides that are multiples of 4 (the network's
    stride), at least 4: at 192, 16:9 gives 144 x 256 and 9:16 gives 256 x 144.
    """
    if aspect == 1.0:
        return size, size

    def nearest_multiple_of_4(side: float) -> int:
        return max(4, math.floor(side / 4 + 0.5) * 4)

    return nearest_multiple_of_4(size / math.sqrt(aspect)), nearest_multiple_of_4(size * math.sqrt(aspect))


def random_crop(image: tf.Tensor, shape: int | tuple[int, int], seed: tf.Tensor, blur_fraction: float = 0.0,
                max_scale: float = TrainConfig.max_short_side_scale) -> tf.Tensor:
    """Resizes a photo to just cover the crop, times a factor drawn from [1, `max_scale`], then takes a
    random crop and flip.

    For a square crop the short side becomes the crop's side times the factor. With
    `blur_fraction` > 0, that fraction of the crops is blurred (`gaussian_blur`, a deviation
    drawn from `BLUR_SIGMA_RANGE`), so the network also learns on smooth, bokeh-like photos; the
    crop and flip are the same as without it.

    Args:
        image: float32 [H, W, 3].
        shape: the crop's side (a square), or its (height, width).
        seed: int32 [2] stateless seed.
        blur_fraction: share of crops blurred, in [0, 1].
        max_scale: how far past just covering the crop the photo may be enlarged (at least 1): the
            larger, the wider the range of scales at which the crops show a photo's objects.

    Returns:
        float32 [height, width, 3].
    """
    crop = tf.constant((shape, shape) if isinstance(shape, int) else shape, tf.int32)
    seeds = tf.random.experimental.stateless_split(seed, 3)
    factor = tf.random.stateless_uniform([], seeds[0], 1.0, max_scale)
    photo = tf.cast(tf.shape(image)[:2], tf.float32)
    cover = tf.reduce_max(tf.cast(crop, tf.float32) / photo)
    new_shape = tf.cast(tf.math.ceil(photo * cover * factor), tf.int32)
    image = tf.image.resize(image, tf.maximum(new_shape, crop), antialias=True)
    image = tf.image.stateless_random_crop(image, tf.concat([crop, [3]], axis=0), seeds[1])
    image = tf.image.stateless_random_flip_left_right(image, seeds[2])
    if blur_fraction > 0.0:
        blur_seeds = tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(
            seed, _BLUR_SEED_SALT), 2)
        sigma = tf.random.stateless_uniform([], blur_seeds[0], *BLUR_SIGMA_RANGE)
        blurred = tf.random.stateless_uniform([], blur_seeds[1]) < blur_fraction
        image = tf.cond(blurred, lambda: gaussian_blur(image, sigma), lambda: image)
    return tf.clip_by_value(image, 0.0, 255.0)


def training_dataset(photos: list[str], size: int, batch_size: int, seed: int, skipped: SkippedFiles,
                     max_pixels: int = TrainConfig.max_pixels, blur_fraction: float = 0.0,
                     max_scale: float = TrainConfig.max_short_side_scale,
                     aspects: tuple[float, ...] = TrainConfig.crop_aspects) -> tf.data.Dataset:
    """An endless, shuffled dataset of float32 [batch_size, height, width, 3] batches in [0, 255]: crops
    of `size` x `size` pixels, each batch of one of the `aspects` in turn (`random_crops`).

    Photos that cannot be decoded, or whose header claims more than `max_pixels` pixels, are
    skipped and recorded in `skipped`. When every photo has failed to decode, iterating raises
    `tf.errors.InvalidArgumentError` carrying the `InvalidInputError` message
    (`skipped.raise_if_none_decoded` raises it again as itself).
    """
    paths = tf.data.Dataset.from_tensor_slices(photos).shuffle(len(photos), seed=seed, reshuffle_each_iteration=True)
    decoder = _decoder(skipped, len(set(photos)), max_pixels)
    images = paths.repeat().map(decoder, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    images = images.filter(_decoded_ok).map(_drop_flag)
    crops = random_crops(images, size, seed, blur_fraction, max_scale, aspects, batch_size)
    return crops.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def random_crops(images: tf.data.Dataset, size: int, seed: int, blur_fraction: float = 0.0,
                 max_scale: float = TrainConfig.max_short_side_scale,
                 aspects: tuple[float, ...] = TrainConfig.crop_aspects, batch_size: int = 1) -> tf.data.Dataset:
    """float32 [H, W, 3] images -> float32 random crops, flips and blurs (`random_crop`), seeded.

    With one aspect every crop is [size, size, 3] (or that aspect's `crop_shape`). With several, the
    crops come in runs of `batch_size`, each run of the next aspect in turn, so that batching them
    by `batch_size` gives batches of one shape each.
    """
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    shapes = [crop_shape(size, aspect) for aspect in aspects]

    def crop_of_its_turn(image, pair, index):
        seed = _stateless_seed(pair)
        if len(shapes) == 1:  # One static shape, known to the batches and the train step.
            return random_crop(image, shapes[0], seed, blur_fraction, max_scale)
        branches = [lambda shape=shape: random_crop(image, shape, seed, blur_fraction, max_scale) for shape in shapes]
        return tf.switch_case(tf.cast((index // batch_size) % len(shapes), tf.int32), branches)

    return tf.data.Dataset.zip(images, seeds, tf.data.Dataset.counter()).map(
        crop_of_its_turn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _stateless_seed(pair: tf.Tensor) -> tf.Tensor:
    """int64 [2] draws of `tf.data.Dataset.random` -> an int32 [2] stateless seed."""
    return tf.cast(pair % (2**31 - 1), tf.int32)


def validation_batch(photos: list[str], size: int, max_pixels: int = TrainConfig.max_pixels) -> np.ndarray:
    """Centre crops of the validation photos: float32 [N, size, size, 3] (unreadable ones, and those over
    `max_pixels`, left out)."""
    crops = []
    for path in photos:
        try:
            image = image_io.load_image(path, max_pixels=max_pixels)
        except InvalidInputError:
            continue
        height, width = image.shape[:2]
        scale = size / min(height, width)
        image = image_io.resize_image(image, max(size, round(height * scale)), max(size, round(width * scale)))
        top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
        crops.append(image[top:top + size, left:left + size])
    return np.stack(crops) if crops else np.zeros([0, size, size, 3], np.float32)
