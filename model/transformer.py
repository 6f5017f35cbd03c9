"""The image-transformation network of Johnson et al. 2016, with the usual fixes.

Layout (channel counts at width multiplier 1):

    9x9 conv 32 -> 3x3 conv 64 /2 -> 3x3 conv 128 /2 -> 5 residual blocks of 128
    -> x2 nearest resize + 3x3 conv 64 -> x2 nearest resize + 3x3 conv 32 -> 9x9 conv 3

Every conv uses reflection padding and is followed by instance normalisation
and ReLU, except the last, whose output goes through ``255 * sigmoid``. Upsampling
is resize-then-convolve, not transposed convolution, which avoids checkerboard
artefacts (Odena et al. 2016).

Range contract: float32 RGB [N, H, W, 3] in [0, 255] in, the same out. Any
N, H and W: inputs are edge-padded to a multiple of 4 (and at least
`MIN_SIDE`) inside and cropped back, so the output has the input's size.
"""

import math

import numpy as np
import tensorflow as tf

MIN_SIDE = 16
_RESIDUAL_BLOCKS = 5


def _edge_pad(images: tf.Tensor, bottom: tf.Tensor, right: tf.Tensor) -> tf.Tensor:
    """Pads [N, H, W, C] at the bottom and right by repeating the last row and column."""
    images = tf.concat([images, tf.repeat(images[:, -1:, :, :], bottom, axis=1)], axis=1)
    return tf.concat([images, tf.repeat(images[:, :, -1:, :], right, axis=2)], axis=2)


class _Conv(tf.Module):
    """Reflection-padded convolution, optionally followed by instance norm and ReLU."""

    def __init__(self, channels_in: int, channels_out: int, kernel_size: int, stride: int = 1,
                 normalize: bool = True, relu: bool = True, name: str | None = None):
        super().__init__(name=name)
        fan_in = kernel_size * kernel_size * channels_in
        initial = tf.random.truncated_normal([kernel_size, kernel_size, channels_in, channels_out], stddev=math.sqrt(2.0 / fan_in))
        self.kernel = tf.Variable(initial, name="kernel")
        self.bias = tf.Variable(tf.zeros([channels_out]), name="bias")
        if normalize:
            self.scale = tf.Variable(tf.ones([channels_out]), name="scale")
            self.offset = tf.Variable(tf.zeros([channels_out]), name="offset")
        self.kernel_size, self.stride, self.normalize, self.relu = kernel_size, stride, normalize, relu

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        pad = self.kernel_size // 2
        x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        x = tf.nn.conv2d(x, tf.cast(self.kernel, x.dtype), strides=self.stride, padding="VALID")
        x = tf.nn.bias_add(x, tf.cast(self.bias, x.dtype))
        if self.normalize:
            mean, variance = tf.nn.moments(tf.cast(x, tf.float32), axes=[1, 2], keepdims=True)
            normalized = (tf.cast(x, tf.float32) - mean) * tf.math.rsqrt(variance + 1e-5)
            x = tf.cast(normalized * self.scale + self.offset, x.dtype)
        return tf.nn.relu(x) if self.relu else x


class _Residual(tf.Module):
    """Two 3x3 convolutions with a skip connection (no ReLU after the sum)."""

    def __init__(self, channels: int, name: str | None = None):
        super().__init__(name=name)
        self.first = _Conv(channels, channels, 3)
        self.second = _Conv(channels, channels, 3, relu=False)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return x + self.second(self.first(x))


class _Upsample(tf.Module):
    """Nearest-neighbour x2 resize followed by a 3x3 convolution."""

    def __init__(self, channels_in: int, channels_out: int, name: str | None = None):
        super().__init__(name=name)
        self.conv = _Conv(channels_in, channels_out, 3)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        x = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)
        return self.conv(x)


class TransformerNet(tf.Module):
    """Johnson et al.'s feed-forward stylization network.

    Args:
        width: width multiplier on every channel count (1.0 = the paper's 32/64/128).
        compute_dtype: float32, or float16/bfloat16 for mixed precision (variables stay float32).
        seed: seeds the initial weights.
    """

    def __init__(self, width: float = 1.0, compute_dtype=tf.float32, seed: int | None = 0, name: str = "transformer"):
        super().__init__(name=name)
        if seed is not None:
            tf.random.set_seed(seed)
        c1, c2, c3 = (max(4, int(round(c * width))) for c in (32, 64, 128))
        self.width = width
        self.compute_dtype = tf.as_dtype(compute_dtype)
        self.encoder = [_Conv(3, c1, 9), _Conv(c1, c2, 3, stride=2), _Conv(c2, c3, 3, stride=2)]
        self.residuals = [_Residual(c3) for _ in range(_RESIDUAL_BLOCKS)]
        self.decoder = [_Upsample(c3, c2), _Upsample(c2, c1)]
        self.output_conv = _Conv(c1, 3, 9, normalize=False, relu=False)

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        """Stylizes a batch.

        Args:
            images: float32 [N, H, W, 3], RGB in [0, 255], any N, H, W >= 1.

        Returns:
            float32 [N, H, W, 3], RGB in [0, 255].
        """
        images = tf.convert_to_tensor(images, tf.float32)
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        padded_height = tf.maximum(MIN_SIDE, (height + 3) // 4 * 4)
        padded_width = tf.maximum(MIN_SIDE, (width + 3) // 4 * 4)
        x = _edge_pad(images, padded_height - height, padded_width - width)
        x = tf.cast(x / 127.5 - 1.0, self.compute_dtype)
        for layer in self.encoder:
            x = layer(x)
        for block in self.residuals:
            x = block(x)
        for layer in self.decoder:
            x = layer(x)
        x = 255.0 * tf.sigmoid(tf.cast(self.output_conv(x), tf.float32))
        return x[:, :height, :width, :]

    def weights_dict(self) -> dict[str, np.ndarray]:
        """Every variable's value by its path in the module tree (for compact bundling)."""
        return {path: variable.numpy() for path, variable in _variables_by_path(self).items()}

    def load_weights_dict(self, arrays: dict[str, np.ndarray]) -> None:
        """Assigns values saved by `weights_dict` (any float dtype); shapes must match."""
        variables = _variables_by_path(self)
        missing = set(variables).symmetric_difference(arrays)
        if missing:
            raise ValueError(f"weights do not match this network (width {self.width}): {sorted(missing)[:4]}")
        for path, variable in variables.items():
            variable.assign(np.asarray(arrays[path], dtype=np.float32))


def _variables_by_path(module: tf.Module) -> dict[str, tf.Variable]:
    """``{"encoder/0/kernel": variable, ...}`` from the module's attribute tree."""
    found = {}
    for path, value in module._flatten(predicate=lambda v: isinstance(v, tf.Variable), with_path=True):
        found["/".join(str(part) for part in path)] = value
    return found
