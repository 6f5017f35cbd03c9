"""The image-transformation network of Johnson et al. 2016, with the usual fixes.

Layout (channel counts at width multiplier 1):

    9x9 conv 32 -> 3x3 conv 64 /2 -> 3x3 conv 128 /2 -> 5 residual blocks of 128
    -> x2 nearest resize + 3x3 conv 64 -> x2 nearest resize + 3x3 conv 32 -> 9x9 conv 3

(5 residual blocks is the paper's count and the default; a network can have more, see
`impasto.model.feedforward.deepen`.)

Every conv uses reflection padding and is followed by instance normalisation
and ReLU, except the last, whose output goes through ``255 * sigmoid``. Upsampling
is resize-then-convolve, not transposed convolution, which avoids checkerboard
artefacts (Odena et al. 2016); it is computed as an equivalent sub-pixel
convolution (see `_Upsample`).

Range contract: float32 RGB [N, H, W, 3] in [0, 255] in, the same out. Any
N, H and W: inputs are edge-padded to a multiple of 4 (and at least
`MIN_SIDE`) inside and cropped back, so the output has the input's size.
"""

import math

import numpy as np
import tensorflow as tf

from impasto.model.feedforward.instance_norm import Region, instance_norm, scaled_region
from impasto.model.feedforward.layout import (
    DECODER_KERNEL,
    ENCODER_KERNELS,
    OUTPUT_KERNEL,
    RESIDUAL_BLOCKS,
    channel_counts,
)
from impasto.model.feedforward.noise_input import append_noise, noise_texture
from impasto.model.feedforward.padding import edge_pad, reflect_indices

MIN_SIDE = 16

# How it runs fast on CPU (same variables and results as the plain layer-by-layer
# form): every conv's bias is fused into it by oneDNN; instance norm and ReLU are
# one fused batch-norm kernel; wide activations are reflection-padded by one
# gather of whole pixels (MirrorPad copies element by element, several times
# slower); upsampling is a sub-pixel convolution at the small size; and the last
# 9x9 conv to 3 channels, which oneDNN runs far below its usual rate, runs
# on 4x4 pixel blocks. Upsampled activations stay in "phased" form, [N, H/2, W/2,
# 4C] (each 2x2 block's pixels in the channels, as depth_to_space reads them),
# and the gather that pads them for the next conv also rearranges them.


# With a `valid` size (int32 [2], rows and columns; see `TransformerNet.__call__`),
# the padding helpers below (and `impasto.model.feedforward.padding`'s index rules) treat the image as
# ending there: whatever lies beyond (bucket padding) is replaced by what padding at that edge would give.


def _gather_pixels(x: tf.Tensor, rows: tf.Tensor, columns: tf.Tensor, phased: bool) -> tf.Tensor:
    """``x[:, rows, columns, :]`` for index tensors that broadcast together: [N, *shape, C].

    With `phased`, x holds the 2x larger image as [N, H, W, 4C] and rows and
    columns index that image.
    """
    shape = tf.shape(x)
    channels = x.shape[-1] // 4 if phased else x.shape[-1]
    if phased:
        index = ((rows // 2) * shape[2] + columns // 2) * 4 + (rows % 2) * 2 + columns % 2
    else:
        index = rows * shape[2] + columns
    return tf.gather(tf.reshape(x, [shape[0], -1, channels]), index, axis=1)


def _image_size(x: tf.Tensor, phased: bool) -> tuple[tf.Tensor, tf.Tensor]:
    scale = 2 if phased else 1
    return scale * tf.shape(x)[1], scale * tf.shape(x)[2]


def _reflected_axes(x: tf.Tensor, pad: int, phased: bool, valid) -> tuple[tf.Tensor, tf.Tensor]:
    """Source rows and columns of the reflection-padded image `x` holds: int32 [H + 2 pad], [W + 2 pad]."""
    height, width = _image_size(x, phased)
    if valid is None:
        return reflect_indices(height, pad), reflect_indices(width, pad)
    return reflect_indices(height, pad, valid[0]), reflect_indices(width, pad, valid[1])


def _reflect_pad(x: tf.Tensor, pad: int, phased: bool = False, valid=None) -> tf.Tensor:
    """Reflection padding of the image `x` holds (see `_gather_pixels`), as plain [N, H + 2 pad, W + 2 pad, C]."""
    if not phased and x.shape[-1] <= 4 and valid is None:  # Thin (the input): MirrorPad is cheap there.
        return tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    rows, columns = _reflected_axes(x, pad, phased, valid)
    return _gather_pixels(x, rows[:, None], columns[None, :], phased)


def block_taps(block: int, kernel_size: int) -> np.ndarray:
    """``T[phase, tap, k]`` = 1 where output pixel ``block * i + phase`` reads tap ``k`` of a stride-1
    kernel from input pixel ``block * i + tap`` (tap = phase + k), for a kernel over `block`-pixel blocks."""
    taps = -(-(kernel_size + block - 1) // block) * block
    table = np.zeros([block, taps, kernel_size], np.float32)
    for phase in range(block):
        table[phase, phase:phase + kernel_size] = np.eye(kernel_size, dtype=np.float32)
    return table


# Nearest x2 resize, reflection pad 1 and a 3x3 conv equal a 3x3 conv of the
# small input, edge-padded by 1, with a kernel per output phase (sums of the
# original taps): even outputs read small pixels i-1 (w0) and i (w1 + w2), odd
# ones i (w0 + w1) and i+1 (w2). ``[phase, tap, k]`` as in `block_taps`.
UPSAMPLE_TAPS = np.array([[[1, 0, 0], [0, 1, 1], [0, 0, 0]],
                           [[0, 0, 0], [1, 1, 0], [0, 0, 1]]], np.float32)


class _Conv(tf.Module):
    """Reflection-padded convolution, optionally followed by instance norm and ReLU."""

    def __init__(self, channels_in: int, channels_out: int, kernel_size: int, stride: int = 1,
                 normalize: bool = True, relu: bool = True, name: str | None = None):
        super().__init__(name=name)
        fan_in = kernel_size * kernel_size * channels_in
        initial = tf.random.truncated_normal([kernel_size, kernel_size, channels_in, channels_out],
                                             stddev=math.sqrt(2.0 / fan_in))
        self.kernel = tf.Variable(initial, name="kernel")
        self.bias = tf.Variable(tf.zeros([channels_out]), name="bias")
        if normalize:
            self.scale = tf.Variable(tf.ones([channels_out]), name="scale")
            self.offset = tf.Variable(tf.zeros([channels_out]), name="offset")
        self.kernel_size, self.stride, self.normalize, self.relu = kernel_size, stride, normalize, relu

    def __call__(self, x: tf.Tensor, region=None) -> tf.Tensor:
        """Stride 1 only when given `region`, the valid size of `x` (and of the output)."""
        x = _reflect_pad(x, self.kernel_size // 2, valid=region)
        return self.finish(self.convolve(x, self.kernel, strides=self.stride), region=region)

    def convolve(self, x: tf.Tensor, kernel: tf.Tensor, strides: int = 1, bias_copies: int = 1) -> tf.Tensor:
        """VALID conv of `x` with `kernel` (a form of ``self.kernel``) plus the bias, tiled `bias_copies` times."""
        x = tf.nn.conv2d(x, tf.cast(kernel, x.dtype), strides=strides, padding="VALID")
        return tf.nn.bias_add(x, tf.cast(tf.tile(self.bias, [bias_copies]), x.dtype))

    def finish(self, x: tf.Tensor, groups: int = 1, statistics=None, region=None) -> tf.Tensor:
        """Instance norm and ReLU, as configured, of the conv output (`groups` phases of it; see
        `instance_norm` for `statistics` and `region`)."""
        if self.normalize:
            return instance_norm(x, self.scale, self.offset, self.relu, groups, statistics, region)
        return tf.nn.relu(x) if self.relu else x

    def blocked(self, x: tf.Tensor, phased: bool = False, block: int = 4, valid=None) -> tf.Tensor:
        """The same stride-1 layer computed on `block` x `block` pixel blocks of `x` (see `_gather_pixels`).

        One gather pads and packs each block's pixels into the channels, a
        small-kernel conv maps them to ``block**2`` times the output channels,
        depth_to_space unpacks. More multiply-adds (x1.8 for 9x9 at block 4) at
        a shape oneDNN runs near its peak; a 9x9 conv to 3 channels runs far
        below it. `block` must divide ``kernel_size - 1`` and the image's H and W.
        """
        pad, size = self.kernel_size // 2, self.kernel_size
        channels_in, channels_out = self.kernel.shape[2], self.kernel.shape[3]
        rows, columns = _reflected_axes(x, pad, phased, valid)
        rows, columns = tf.reshape(rows, [-1, 1, block, 1]), tf.reshape(columns, [1, -1, 1, block])
        x = _gather_pixels(x, rows, columns, phased)  # [N, (H + 2 pad) / b, (W + 2 pad) / b, b, b, C]
        x = tf.reshape(x, tf.concat([tf.shape(x)[:3], [block * block * channels_in]], 0))
        taps = block_taps(block, size)
        blocks = taps.shape[1] // block
        kernel = tf.einsum("Rak,Cbl,klio->abioRC", taps, taps, self.kernel)
        kernel = tf.reshape(kernel, [blocks, block, blocks, block, channels_in, channels_out, block, block])
        kernel = tf.reshape(tf.transpose(kernel, [0, 2, 1, 3, 4, 6, 7, 5]),
                            [blocks, blocks, block * block * channels_in, block * block * channels_out])
        return self.finish(tf.nn.depth_to_space(self.convolve(x, kernel, bias_copies=block * block), block))


class _Residual(tf.Module):
    """Two 3x3 convolutions with a skip connection (no ReLU after the sum)."""

    def __init__(self, channels: int, name: str | None = None):
        super().__init__(name=name)
        self.first = _Conv(channels, channels, 3)
        self.second = _Conv(channels, channels, 3, relu=False)

    def __call__(self, x: tf.Tensor, region=None) -> tf.Tensor:
        return x + self.second(self.first(x, region), region)


class _Upsample(tf.Module):
    """Nearest-neighbour x2 resize followed by a 3x3 convolution.

    Computed as a sub-pixel convolution: one 3x3 conv of the edge-padded small
    input to 4x the channels (a kernel per output phase; the same multiply-add
    count), which equals resize, reflection pad and convolve exactly. Returns
    the phased form, [N, H, W, 4C] for the [N, 2H, 2W, C] image.
    """

    def __init__(self, channels_in: int, channels_out: int, name: str | None = None):
        super().__init__(name=name)
        self.conv = _Conv(channels_in, channels_out, DECODER_KERNEL)

    def convolve(self, x: tf.Tensor, phased: bool = False, valid=None) -> tf.Tensor:
        """The phased convolution output before instance norm: [N, H, W, 4C] (`valid`: of the input image)."""
        channels_in, channels_out = self.conv.kernel.shape[2], self.conv.kernel.shape[3]
        height, width = _image_size(x, phased)
        last_row, last_column = (height - 1, width - 1) if valid is None else (valid[0] - 1, valid[1] - 1)
        rows = tf.clip_by_value(tf.range(-1, height + 1), 0, last_row)
        columns = tf.clip_by_value(tf.range(-1, width + 1), 0, last_column)
        x = _gather_pixels(x, rows[:, None], columns[None, :], phased)
        kernel = tf.einsum("iak,jbl,klco->abcijo", UPSAMPLE_TAPS, UPSAMPLE_TAPS, self.conv.kernel)
        kernel = tf.reshape(kernel, [3, 3, channels_in, 4 * channels_out])
        return self.conv.convolve(x, kernel, bias_copies=4)


class TransformerNet(tf.Module):
    """Johnson et al.'s feed-forward stylization network.

    Args:
        width: width multiplier on every channel count (1.0 = the paper's 32/64/128).
        residual_blocks: how many residual blocks at a quarter of the resolution (the paper's 5).
        compute_dtype: float32, or float16/bfloat16 for mixed precision (variables stay float32).
        seed: seeds the initial weights.
        noise_channels: channels of the fixed noise texture the first conv reads beside the RGB ones
            (`impasto.model.feedforward.noise_input`; 0, the paper's network, reads none).
    """

    def __init__(self, width: float = 1.0, residual_blocks: int = RESIDUAL_BLOCKS, compute_dtype=tf.float32,
                 seed: int | None = 0, name: str = "transformer", noise_channels: int = 0):
        super().__init__(name=name)
        if not isinstance(residual_blocks, int) or residual_blocks < 1:
            raise ValueError(f"a transformer needs a positive whole number of residual blocks, not {residual_blocks!r}")
        if seed is not None:
            tf.random.set_seed(seed)
        c1, c2, c3 = channel_counts(width)
        if not isinstance(noise_channels, int) or noise_channels < 0:
            raise ValueError(f"a transformer reads a whole number of noise channels, not {noise_channels!r}")
        self.width, self.residual_blocks, self.noise_channels = width, residual_blocks, noise_channels
        self.compute_dtype = tf.as_dtype(compute_dtype)
        self.noise = tf.constant(noise_texture(noise_channels)) if noise_channels else None  # [P, P, channels]
        self.encoder = [_Conv(channels_in, channels_out, kernel, stride=stride) for (kernel, stride), channels_in,
                        channels_out in zip(ENCODER_KERNELS, (3 + noise_channels, c1, c2), (c1, c2, c3), strict=True)]
        self.residuals = [_Residual(c3) for _ in range(residual_blocks)]
        self.decoder = [_Upsample(c3, c2), _Upsample(c2, c1)]
        self.output_conv = _Conv(c1, 3, OUTPUT_KERNEL, normalize=False, relu=False)

    def __call__(self, images: tf.Tensor, valid_size: tf.Tensor | None = None,
                 static_shapes: bool = False) -> tf.Tensor:
        """Stylizes a batch.

        Args:
            images: float32 [N, H, W, 3], RGB in [0, 255], any N, H, W >= 1.
            valid_size: int32 [2], (height, width) of the real image at the top left of
                `images` when the rest is padding (a serving size bucket): instance norms
                then take their statistics from that region only, and every layer pads
                at its edges, as if run at its size.
            static_shapes: with `valid_size`, compute only with static shapes (for XLA).

        Returns:
            float32 [N, H, W, 3], RGB in [0, 255].
        """
        images = tf.convert_to_tensor(images, tf.float32)
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        region = None
        if valid_size is not None:
            region = Region(tf.maximum(MIN_SIDE, (valid_size + 3) // 4 * 4), masked=static_shapes)
        encoded = self.encode(self.prepare(images, valid_size), region=region)
        stylized = self.decode(self.transform(encoded, region=region), region=region)
        return stylized[:, :height, :width, :]

    # The stages below let `impasto.model.feedforward.tiled_network` run the network piecewise with
    # instance-norm statistics shared by all tiles. Each of `encode` and `decode`
    # takes `statistics`, (mean, variance) for its first len(statistics) instance
    # norms (the rest use each image's own), and `stop`: return that layer's
    # convolution output before its instance norm instead of going on. `region`
    # is `__call__`'s valid size, rounded up to a multiple of 4.

    def prepare(self, images: tf.Tensor, valid_size=None) -> tf.Tensor:
        """[N, H, W, 3] in [0, 255] -> edge-padded to multiples of 4 (>= MIN_SIDE), in [-1, 1], compute dtype.

        With `valid_size`, everything beyond it is replaced by the edge padding too. A network
        that reads noise gets its channels after the RGB ones: [N, H', W', 3 + noise_channels]."""
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        padded_height = tf.maximum(MIN_SIDE, (height + 3) // 4 * 4)
        padded_width = tf.maximum(MIN_SIDE, (width + 3) // 4 * 4)
        padded = edge_pad(images, padded_height, padded_width, valid_size)
        prepared = tf.cast(padded / 127.5 - 1.0, self.compute_dtype)
        return prepared if self.noise is None else append_noise(prepared, self.noise)

    def encode(self, x: tf.Tensor, statistics=(), stop: int | None = None, region=None) -> tf.Tensor:
        """Prepared [N, H, W, 3 + noise_channels] -> [N, H/4, W/4, C3] after the encoder's third conv, norm and ReLU."""
        for index, layer in enumerate(self.encoder):
            padded = _reflect_pad(x, layer.kernel_size // 2, valid=scaled_region(region, max(1, 2 ** (index - 1))))
            x = layer.convolve(padded, layer.kernel, strides=layer.stride)
            if index == stop:
                return x
            x = layer.finish(x, statistics=statistics[index] if index < len(statistics) else None,
                             region=scaled_region(region, 2 ** index))
        return x

    def transform(self, x: tf.Tensor, region=None) -> tf.Tensor:
        """The residual blocks, [N, H/4, W/4, C3] -> the same shape."""
        for block in self.residuals:
            x = block(x, scaled_region(region, 4))
        return x

    def decode(self, x: tf.Tensor, statistics=(), stop: int | None = None, region=None) -> tf.Tensor:
        """[N, H/4, W/4, C3] -> float32 [N, H, W, 3] in [0, 255] (`stop` 0 or 1: phased upsampling output)."""
        for index, layer in enumerate(self.decoder):
            x = layer.convolve(x, phased=index > 0, valid=scaled_region(region, 4 // 2 ** index))
            if index == stop:
                return x
            # The phased output of upsampling stage `index` is a grid at 1/4, then 1/2, of the full size.
            x = layer.conv.finish(x, groups=4, statistics=statistics[index] if index < len(statistics) else None,
                                  region=scaled_region(region, 4 // 2 ** index))
        output = self.output_conv.blocked(x, phased=True, valid=region)
        return 255.0 * tf.sigmoid(tf.cast(output, tf.float32))

    def weights_dict(self) -> dict[str, np.ndarray]:
        """Every variable's value by its path in the module tree (for compact bundling)."""
        return {path: variable.numpy() for path, variable in _variables_by_path(self).items()}

    def load_weights_dict(self, arrays: dict[str, np.ndarray]) -> None:
        """Assigns values saved by `weights_dict` (any float dtype); shapes must match."""
        variables = _variables_by_path(self)
        missing = set(variables).symmetric_difference(arrays)
        if missing:
            raise ValueError(f"weights do not match this network (width {self.width}, {self.residual_blocks} residual "
                             f"blocks): {sorted(missing)[:4]}")
        for path, variable in variables.items():
            if tuple(np.shape(arrays[path])) != tuple(variable.shape):
                raise ValueError(f"weights do not match this network: {path} is {np.shape(arrays[path])}, "
                                 f"not {tuple(variable.shape)}")
        for path, variable in variables.items():
            variable.assign(np.asarray(arrays[path], dtype=np.float32))


def _variables_by_path(module: tf.Module) -> dict[str, tf.Variable]:
    """``{"encoder/0/kernel": variable, ...}`` from the module's attribute tree."""
    found = {}
    for path, value in module._flatten(predicate=lambda v: isinstance(v, tf.Variable), with_path=True):
        found["/".join(str(part) for part in path)] = value
    return found
