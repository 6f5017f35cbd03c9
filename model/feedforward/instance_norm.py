"""Instance normalisation as the transformer network needs it: per image, shared, or over a region.

Three ways to get the statistics (each channel's mean and variance):

- each image's own, over all of H and W (training, and stylizing one image whole);
- given from outside, the same for every tile of an image (`impasto.model.feedforward.tiled_network`);
- each image's own over a valid region at its top left, when the rest is padding
  (the exported signatures pad images up to a size bucket).
"""

from dataclasses import dataclass

import tensorflow as tf

EPSILON = 1e-5


@dataclass(frozen=True)
class Region:
    """The valid part of a padded tensor: ``x[:, :size[0], :size[1]]``.

    Attributes:
        size: int32 [2], rows and columns.
        masked: take statistics through a mask (static shapes, as XLA needs) rather than
            a slice of the region (faster where shapes may vary).
    """

    size: tf.Tensor
    masked: bool = False

    def __getitem__(self, axis: int) -> tf.Tensor:
        return self.size[axis]


def scaled_region(region: Region | None, factor: int) -> Region | None:
    """A full-resolution region on a grid `factor` times smaller (rounded up)."""
    return None if region is None else Region((region.size + factor - 1) // factor, region.masked)


def instance_norm(x: tf.Tensor, scale: tf.Variable, offset: tf.Variable, relu: bool, groups: int = 1,
                  statistics: tuple[tf.Tensor, tf.Tensor] | None = None, region: Region | None = None) -> tf.Tensor:
    """Normalizes each image's channels over H, W (and the `groups` channel groups), scales, offsets, ReLU.

    In float32 this is one fused batch-norm kernel (ReLU fused) over the batch
    folded into the channels, [1, H, W * groups, N * C]; the transposes are free
    when N is 1. Other dtypes take the statistics in float32.

    Args:
        x: [N, H, W, groups * C] convolution output.
        scale, offset: float32 [C].
        relu: apply ReLU after.
        groups: channel groups that share statistics (phases of a phased tensor).
        statistics: (mean, variance), float32 [C] each: normalize with these instead of
            each image's own (tiling shares one set across all tiles of an image).
        region: the part of `x` at its top left to take each image's statistics from (the
            rest is padding, and is normalized alike but meaningless).
    """
    if region is not None:
        return _instance_norm_over_region(x, scale, offset, relu, groups, region)
    if statistics is not None:
        mean, variance = (tf.tile(tf.cast(value, tf.float32), [groups]) for value in statistics)
        return _normalize(x, scale, offset, relu, groups, mean, variance)
    shape = tf.shape(x)
    batch, height, width, channels = shape[0], shape[1], shape[2] * groups, x.shape[-1] // groups
    x = tf.reshape(x, [batch, height, width, channels])
    if x.dtype == tf.float32:
        folded = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, height, width, batch * channels])
        x, _, _ = tf.compat.v1.nn.fused_batch_norm(
            folded, tf.tile(scale, [batch]), tf.tile(offset, [batch]), epsilon=EPSILON, is_training=True)
        x = tf.nn.relu(x) if relu else x
        return tf.reshape(tf.transpose(tf.reshape(x, [height, width, batch, channels]), [2, 0, 1, 3]), shape)
    mean, variance = tf.nn.moments(tf.cast(x, tf.float32), axes=[1, 2], keepdims=True)
    x = tf.cast((tf.cast(x, tf.float32) - mean) * tf.math.rsqrt(variance + EPSILON) * scale + offset, x.dtype)
    return tf.reshape(tf.nn.relu(x) if relu else x, shape)


def _instance_norm_over_region(x: tf.Tensor, scale, offset, relu: bool, groups: int, region: Region) -> tf.Tensor:
    """`instance_norm` with each image's statistics taken over ``x[:, :rows, :columns]``."""
    shape = tf.shape(x)
    channels = x.shape[-1] // groups
    if region.masked:  # Static shapes: sums under a mask.
        values = tf.reshape(tf.cast(x, tf.float32), [shape[0], -1, channels])
        rows = tf.range(shape[1]) < region[0]
        columns = tf.range(shape[2]) < region[1]
        mask = tf.cast(rows[:, None, None] & columns[None, :, None], tf.float32)  # [H, W, 1]
        mask = tf.reshape(tf.tile(mask, [1, 1, groups]), [1, -1, 1])
        count = tf.cast(region[0] * region[1] * groups, tf.float32)
        mean = tf.reduce_sum(values * mask, axis=1, keepdims=True) / count
        variance = tf.reduce_sum(tf.square(values - mean) * mask, axis=1, keepdims=True) / count
    else:
        inside = tf.reshape(tf.cast(x[:, :region[0], :region[1]], tf.float32), [shape[0], -1, channels])
        mean, variance = tf.nn.moments(inside, axes=[1], keepdims=True)
    # [N, 1, C] -> [N, 1, 1, groups * C], the channel order of x.
    mean, variance = (tf.tile(value, [1, 1, groups])[:, None] for value in (mean, variance))
    return _normalize(x, scale, offset, relu, groups, mean, variance)


def _normalize(x: tf.Tensor, scale, offset, relu: bool, groups: int, mean: tf.Tensor, variance: tf.Tensor) -> tf.Tensor:
    """``(x - mean) / sqrt(variance + EPSILON) * scale + offset``, ReLU if asked, in float32, cast back.

    `mean` and `variance` broadcast against x, in its channel order (`groups` copies of C).
    """
    multiplier = tf.tile(scale, [groups]) * tf.math.rsqrt(variance + EPSILON)
    normalized = tf.cast(x, tf.float32) * multiplier + (tf.tile(offset, [groups]) - mean * multiplier)
    return tf.cast(tf.nn.relu(normalized) if relu else normalized, x.dtype)
