"""Johnson et al.'s transformer network written plainly, layer by layer as the paper draws it.

The same network as `impasto.model.feedforward.transformer.TransformerNet`, from the same
weights (its `weights_dict()`), with the same output: that module computes it
faster on CPU (fused norms, sub-pixel upsampling, blocked last conv);
tests/test_reference_transformer.py holds the two equal. This form uses only
ops that TensorFlow Lite has builtin kernels for, so the LiteRT export
(`impasto.export.litert`) converts it. Two of its steps are spelt so that LiteRT's
XNNPACK delegate runs them rather than the slow reference kernels (XNNPACK has no
MIRROR_PAD or RESIZE_NEAREST_NEIGHBOR, and each op it lacks splits the network in
two): reflection padding as slices and a concatenation (`reflect_pad`), and the
nearest-neighbour x2 resize as four copies of each pixel unpacked by depth_to_space.

    9x9 conv -> 3x3 conv /2 -> 3x3 conv /2 -> 5 residual blocks
    -> x2 nearest resize + 3x3 conv -> x2 nearest resize + 3x3 conv -> 9x9 conv -> 255 * sigmoid

A network trained to read noise (`impasto.model.feedforward.noise_input`) gets the
fixed texture as extra input channels after the RGB ones, repeated over the image.

Every conv is reflection-padded to keep the size; all but the last are followed
by instance normalisation and ReLU (the second conv of a residual block has no
ReLU; the block adds its input).
"""

import numpy as np
import tensorflow as tf

from impasto.model.feedforward.instance_norm import EPSILON
from impasto.model.feedforward.layout import residual_block_count
from impasto.model.feedforward.noise_input import append_noise, noise_channel_count, noise_texture, scale_noise_taps
from impasto.model.feedforward.transformer import MIN_SIDE


def reflect_pad(x: tf.Tensor, pad: int) -> tf.Tensor:
    """``tf.pad(x, ..., mode="REFLECT")`` of [N, H, W, C] by `pad` (< H, W) on each side of H and W, by slices:
    rows ``pad, ..., 1``, the image, rows ``H - 2, ..., H - 1 - pad``, then the same for columns."""
    for axis in (1, 2):
        lead = (slice(None),) * axis  # x[lead + (slice(i, i + 1),)]: row or column i, kept as an axis.
        before = [x[lead + (slice(index, index + 1),)] for index in range(pad, 0, -1)]
        after = [x[lead + (slice(-index, -index + 1),)] for index in range(2, pad + 2)]
        x = tf.concat(before + [x] + after, axis=axis)
    return x


def instance_norm(x: tf.Tensor, epsilon=EPSILON) -> tf.Tensor:
    """Normalizes each image's channels over H and W: [N, H, W, C] -> the same (biased variance; `epsilon`,
    a number or float32 [C], is added to it)."""
    mean, variance = tf.nn.moments(x, axes=[1, 2], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + epsilon)


class ConvLayer(tf.Module):
    """Reflection pad, convolution plus bias, then instance norm (scale, offset) and ReLU, as configured.

    Args:
        weights: ``{path: array}`` as `TransformerNet.weights_dict` names them; this layer
            pops ``prefix/kernel``, ``prefix/bias`` and, when it normalizes, ``prefix/scale``,
            ``prefix/offset`` and, if there is one, ``prefix/epsilon`` (float32 [C]: the norm's epsilon
            per channel, which `litert_network.equalize_norm_inputs` sets; else `EPSILON`).
    """

    def __init__(self, weights: dict, prefix: str, stride: int = 1, normalize: bool = True, relu: bool = True):
        super().__init__()
        self.kernel = tf.constant(weights.pop(f"{prefix}/kernel"), tf.float32)  # [k, k, C_in, C_out]
        self.bias = tf.constant(weights.pop(f"{prefix}/bias"), tf.float32)
        if normalize:
            self.scale = tf.constant(weights.pop(f"{prefix}/scale"), tf.float32)
            self.offset = tf.constant(weights.pop(f"{prefix}/offset"), tf.float32)
            epsilon = weights.pop(f"{prefix}/epsilon", None)
            self.epsilon = EPSILON if epsilon is None else tf.constant(epsilon, tf.float32)
        self.stride, self.normalize, self.relu = stride, normalize, relu

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """[N, H, W, C_in] -> [N, H / stride, W / stride, C_out]."""
        return self.finish(self.convolve(x))

    def convolve(self, x: tf.Tensor) -> tf.Tensor:
        """The padded convolution plus bias: [N, H, W, C_in] -> [N, H / stride, W / stride, C_out]."""
        x = self.pad(x, self.kernel.shape[0] // 2)
        return tf.nn.conv2d(x, self.kernel, strides=self.stride, padding="VALID") + self.bias

    def finish(self, x: tf.Tensor) -> tf.Tensor:
        """Instance norm (scale, offset) and ReLU of the conv output, as configured."""
        if self.normalize:
            x = self.scaled_norm(x)
        return tf.nn.relu(x) if self.relu else x

    def pad(self, x: tf.Tensor, pad: int) -> tf.Tensor:
        """Reflection padding by `pad` on each side of H and W."""
        return reflect_pad(x, pad)

    def scaled_norm(self, x: tf.Tensor) -> tf.Tensor:
        """Instance norm of the conv output, then the layer's scale and offset: [N, H, W, C] -> the same."""
        return instance_norm(x, self.epsilon) * self.scale + self.offset


class ResidualBlock(tf.Module):
    """x + conv(conv(x)), both 3x3; ReLU after the first only (`conv_layer`: `ConvLayer` or a form of it)."""

    def __init__(self, weights: dict, prefix: str, conv_layer: type = ConvLayer):
        super().__init__()
        self.first = conv_layer(weights, f"{prefix}/first")
        self.second = conv_layer(weights, f"{prefix}/second", relu=False)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return x + self.second(self.first(x))


class UpsampleLayer(tf.Module):
    """Nearest-neighbour x2 resize, then a 3x3 `ConvLayer`: [N, H, W, C_in] -> [N, 2H, 2W, C_out]."""

    def __init__(self, weights: dict, prefix: str, conv_layer: type = ConvLayer):
        super().__init__()
        self.conv = conv_layer(weights, f"{prefix}/conv")

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return self.conv(tf.nn.depth_to_space(tf.concat([x, x, x, x], axis=-1), 2))  # Each pixel to a 2x2 block.


class ReferenceTransformer(tf.Module):
    """The transformer network from a `TransformerNet.weights_dict()`.

    Args:
        weights: ``{path: array}`` as `TransformerNet.weights_dict` names them.
        conv_layer: the class of every conv layer: `ConvLayer`, or a subclass that computes
            its padding, convolution or norm in another form (`impasto.model.feedforward.litert_network`).
        upsample_layer: the class of the decoder's layers, `UpsampleLayer` or a subclass.
        noise_scale: a network that reads noise reads the texture times this, its noise taps divided by
            it: the same function (the LiteRT form reads it at the photo's range, `litert_network.NOISE_SCALE`).

    Raises:
        ValueError: the weights are not those of a transformer network.
    """

    def __init__(self, weights: dict[str, np.ndarray], conv_layer: type = ConvLayer,
                 upsample_layer: type = UpsampleLayer, name: str = "reference_transformer",
                 noise_scale: float = 1.0):
        super().__init__(name=name)
        try:
            channels = noise_channel_count(weights)
            unused = dict(scale_noise_taps(weights, noise_scale))  # each layer pops its own; what is left is unknown
            self.encoder = [conv_layer(unused, "encoder/0"), conv_layer(unused, "encoder/1", stride=2),
                            conv_layer(unused, "encoder/2", stride=2)]
            self.residuals = [ResidualBlock(unused, f"residuals/{index}", conv_layer)
                              for index in range(residual_block_count(weights))]
            self.decoder = [upsample_layer(unused, f"decoder/{index}", conv_layer) for index in range(2)]
            self.output_conv = conv_layer(unused, "output_conv", normalize=False, relu=False)
        except KeyError as missing:
            raise ValueError(f"not a transformer network's weights: no {missing}") from None
        if unused:
            raise ValueError(f"not a transformer network's weights: unknown {sorted(unused)[:4]}")
        self.noise = tf.constant(noise_texture(channels) * noise_scale) if channels else None  # [P, P, channels]

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        """Stylizes a batch: float32 [N, H, W, 3], RGB in [0, 255], any H, W >= 1 -> the same shape and range.

        As in `TransformerNet`, the input is first edge-padded at the bottom and right to
        multiples of 4 (at least `MIN_SIDE`), and the output cropped back.
        """
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        x = _repeat_last_row_and_column(images, _padded_side(height), _padded_side(width))
        x = x / 127.5 - 1.0
        if self.noise is not None:
            x = append_noise(x, self.noise)
        for layer in self.encoder + self.residuals + self.decoder:
            x = layer(x)
        stylized = 255.0 * tf.sigmoid(self.output_conv(x))
        return stylized[:, :height, :width, :]


def _padded_side(side: tf.Tensor) -> tf.Tensor:
    """`side` rounded up to a multiple of 4, at least `MIN_SIDE`."""
    return tf.maximum(MIN_SIDE, (side + 3) // 4 * 4)


def _repeat_last_row_and_column(images: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Pads [N, H, W, C] to `height` x `width` by repeating its last row, then its last column."""
    extra_rows = height - tf.shape(images)[1]
    images = tf.concat([images, tf.tile(images[:, -1:], [1, extra_rows, 1, 1])], axis=1)
    extra_columns = width - tf.shape(images)[2]
    return tf.concat([images, tf.tile(images[:, :, -1:], [1, 1, extra_columns, 1])], axis=2)
