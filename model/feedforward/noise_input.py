"""A fixed white-noise image the transformer reads beside the photo (Ulyanov et al. 2016, "Texture Networks").

A convolutional network maps a flat region of its input to a flat region of its
output: every pixel there sees the same neighbourhood, so it gets the same value.
The optimizer of Gatys et al. paints brush strokes into a flat sky or a blurred
background; a network fed the photo alone cannot (docs/training.md, "Flat regions").
Ulyanov et al. feed their generators noise for that; here the noise is one fixed
texture, the same for every call, so stylization stays a deterministic function of
the photo: pixel (row, column) of the image reads the texture at (row mod P,
column mod P), with P = `NOISE_PERIOD`.

The texture is not stored in bundles: it is drawn from `NOISE_SEED` by numpy's
legacy ``RandomState``, whose streams numpy keeps unchanged across versions.
"""

import numpy as np
import tensorflow as tf

NOISE_PERIOD = 256
"""Side of the noise texture, which repeats beyond it."""
NOISE_SEED = 20161
"""Seeds the texture (fixed: a trained network depends on its exact values)."""


def noise_texture(channels: int, period: int = NOISE_PERIOD, seed: int = NOISE_SEED) -> np.ndarray:
    """The noise texture: float32 [period, period, channels], standard normal."""
    return np.random.RandomState(seed).standard_normal([period, period, channels]).astype(np.float32)


def noise_plane(texture: tf.Tensor, height: tf.Tensor, width: tf.Tensor, top=0, left=0) -> tf.Tensor:
    """The texture repeated over an image: [height, width, C], pixel (i, j) being
    ``texture[(top + i) mod P, (left + j) mod P]``.

    Args:
        texture: [P, P, C].
        height, width: the plane's size (int32 scalars).
        top, left: where the plane starts in the image (for a tile of it).
    """
    period = tf.shape(texture)[0]
    rows = tf.math.floormod(top + tf.range(height), period)
    columns = tf.math.floormod(left + tf.range(width), period)
    return tf.gather(tf.gather(texture, rows, axis=0), columns, axis=1)


def append_noise(prepared: tf.Tensor, texture: tf.Tensor) -> tf.Tensor:
    """The noise plane after the channels of a prepared batch, the same for every image.

    Args:
        prepared: [N, H, W, C], the network's input as it is prepared (padded, scaled).
        texture: [P, P, K].

    Returns:
        [N, H, W, C + K], in `prepared`'s dtype.
    """
    shape = tf.shape(prepared)
    plane = tf.cast(noise_plane(texture, shape[1], shape[2]), prepared.dtype)
    planes = tf.broadcast_to(plane, tf.concat([shape[:3], tf.shape(texture)[2:]], axis=0))
    return tf.concat([prepared, planes], axis=-1)


def add_noise_input(arrays: dict[str, np.ndarray], channels: int) -> dict[str, np.ndarray]:
    """`TransformerNet.weights_dict()` of the same network reading `channels` noise channels after the RGB ones.

    The first conv's kernel gets zero taps for the new channels, so the network computes
    exactly what it did until training moves them.

    Raises:
        ValueError: the network already reads more noise channels than `channels`.
    """
    kernel = np.asarray(arrays["encoder/0/kernel"], np.float32)  # [9, 9, 3 + noise channels, C1]
    have = kernel.shape[2] - 3
    if channels < have:
        raise ValueError(f"the network reads {have} noise channels; it cannot be made to read {channels}")
    zeros = np.zeros(kernel.shape[:2] + (channels - have,) + kernel.shape[3:], np.float32)
    return {**arrays, "encoder/0/kernel": np.concatenate([kernel, zeros], axis=2)}


def scale_noise_taps(arrays: dict[str, np.ndarray], texture_scale: float) -> dict[str, np.ndarray]:
    """`TransformerNet.weights_dict()` of the same function when the texture is read times `texture_scale`:
    the first conv's noise taps divided by it (a network that reads no noise comes back as it was)."""
    if not noise_channel_count(arrays):
        return arrays
    kernel = np.array(arrays["encoder/0/kernel"], np.float32)  # [9, 9, 3 + noise channels, C1]
    kernel[:, :, 3:] /= texture_scale
    return {**arrays, "encoder/0/kernel": kernel}


def noise_channel_count(arrays) -> int:
    """How many noise channels the network whose variables are `arrays` (paths to arrays) reads."""
    return int(np.shape(arrays["encoder/0/kernel"])[2]) - 3
