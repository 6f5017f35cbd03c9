"""The transformer network in the form the LiteRT export converts: every op one XNNPACK runs.

`ReferenceTransformer` with `XNNPACKConvLayer` and `XNNPACKUpsampleLayer` for its layers:
the same network and weights, with four steps spelt differently (tests/test_litert.py holds it equal
to the reference). An op that XNNPACK, LiteRT's CPU delegate, does not take runs
in LiteRT's slow reference kernels and splits the delegated network in two.

* Reflection padding: the reference concatenates ``2 pad + 1`` pieces at once; XNNPACK's
  CONCATENATION took at most 4 inputs per op (ai-edge-litert 2.3), so the 9x9 convs' padding by 4
  (9 pieces) fell out of it. Here the reflected lines of each side are
  concatenated first, then the three parts.
* The conv to 3 channels (the last, 9x9): a GEMM kernel fills 8 or 16 output lanes, so a conv
  to 3 channels ran at a fraction of its speed. Here it runs on 4x4 pixel blocks, as
  `TransformerNet`'s last conv does (more multiply-adds, better shapes). The first conv, from 3
  channels, fills its output lanes as it stands: blocked too, it ran 0-13% slower (the
  multiply-adds of a 9x9 conv on 4x4 blocks are 1.8x the plain conv's).
* Nearest x2 resize and conv: a sub-pixel conv of the small image (as `TransformerNet` does),
  without the resized copies.
* Instance norm with scale and offset: the reference's ``(x - mean) * rsqrt(var) * scale
  + offset`` is four passes over the image after the statistics. Here the per-channel
  factors are folded first, ``a = scale * rsqrt(var + eps)``, ``b = offset - mean * a``,
  so it is one MUL and one ADD (the converter fuses the ReLU into the ADD). The variance is
  taken as ``E[x^2] - mean^2`` rather than from the differences to the mean (3-4% faster
  at 512 px, side by side; the network's conv outputs keep it well within float32).

For full-integer quantization (int8-full), `equalize_norm_inputs` first moves each instance
norm's input channels to a common scale: one int8 range per tensor then fits every channel.

A network that reads noise (`impasto.model.feedforward.noise_input`) reads its texture times `NOISE_SCALE`
here, its noise taps divided by it (the same function): quantized, the photo and the noise share one
tensor before the first conv, so one int8 range; at the texture's own scale (standard normal, out to
about +-5) that range left the photo [-1, 1] a fifth of its levels.

With these, XNNPACK runs the whole network body as one partition; only the edge
padding of odd sizes to multiples of 4 at the start (TILE) and the crop back at the
end run outside it, on 3-channel images.
"""

import functools
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from impasto.model.feedforward.instance_norm import EPSILON
from impasto.model.feedforward.reference_transformer import ConvLayer, ReferenceTransformer, UpsampleLayer
from impasto.model.feedforward.transformer import UPSAMPLE_TAPS, block_taps

MAX_CONCAT_INPUTS = 4
"""The most inputs of one CONCATENATION that XNNPACK delegates."""

NARROW = 8
"""Convs to fewer output channels than this (the last, to RGB) run blocked (`XNNPACKConvLayer.convolve`)."""

BLOCK = 4
"""Pixels a side of the blocks a narrow conv runs on."""

NOISE_SCALE = 0.2
"""The LiteRT form reads the noise texture times this, near the photo's [-1, 1] (see the module docstring)."""


class XNNPACKConvLayer(ConvLayer):
    """`ConvLayer` with its padding and norm in forms XNNPACK delegates whole (see the module docstring)."""

    def pad(self, x: tf.Tensor, pad: int) -> tf.Tensor:
        if pad == 0:
            return x
        if pad >= MAX_CONCAT_INPUTS + 1:
            raise ValueError(f"reflection padding by {pad}: more than {MAX_CONCAT_INPUTS} lines a side")
        for axis in (1, 2):
            def line(index: int, x=x, axis=axis) -> tf.Tensor:  # Row or column `index`, kept as an axis.
                return x[(slice(None),) * axis + (slice(index, index + 1),)]

            before = _concat([line(index) for index in range(pad, 0, -1)], axis)
            after = _concat([line(-index) for index in range(2, pad + 2)], axis)
            x = tf.concat([before, x, after], axis=axis)
        return x

    def convolve(self, x: tf.Tensor) -> tf.Tensor:
        """As `ConvLayer.convolve`; a stride-1 conv to fewer than `NARROW` channels runs on
        `BLOCK` x `BLOCK` pixel blocks: a conv of stride `BLOCK` to ``BLOCK**2`` times the channels
        (one output pixel of each phase of the block), then DEPTH_TO_SPACE. More multiply-adds,
        but XNNPACK's kernels fill their output lanes. H and W plus twice the padding must be
        multiples of `BLOCK` (the network's are multiples of 4)."""
        size, channels_in, channels_out = self.kernel.shape[0], self.kernel.shape[2], self.kernel.shape[3]
        if self.stride != 1 or channels_out >= NARROW or (size - 1) % BLOCK:
            return super().convolve(x)
        taps = block_taps(BLOCK, size)  # [phase, tap, k]
        kernel = np.einsum("Rak,Cbl,klio->abiRCo", taps, taps, self.kernel.numpy())
        kernel = kernel.reshape([taps.shape[1], taps.shape[1], channels_in, BLOCK * BLOCK * channels_out])
        x = tf.nn.conv2d(self.pad(x, size // 2), kernel, strides=BLOCK, padding="VALID")
        return tf.nn.depth_to_space(x + tf.tile(self.bias, [BLOCK * BLOCK]), BLOCK)

    def scaled_norm(self, x: tf.Tensor) -> tf.Tensor:
        """The statistics as two means of the image, of x and of x squared (``var = E[x^2] - mean^2``,
        clamped at 0): the squares need not wait for the mean, which saves a pass over a large image."""
        mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        mean_square = tf.reduce_mean(tf.square(x), axis=[1, 2], keepdims=True)
        return self.normalize_with(x, mean, tf.maximum(mean_square - tf.square(mean), 0.0))

    def normalize_with(self, x: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor) -> tf.Tensor:
        """Instance norm with the given statistics (broadcasting to [N, 1, 1, C]), scale and offset."""
        factor = self.scale * tf.math.rsqrt(variance + self.epsilon)
        return x * factor + (self.offset - mean * factor)

    def finish_with(self, x: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor) -> tf.Tensor:
        """`finish` with the norm's statistics given (float32 [C] each), not taken from `x`."""
        x = self.normalize_with(x, mean, variance)
        return tf.nn.relu(x) if self.relu else x


class XNNPACKUpsampleLayer(UpsampleLayer):
    """`UpsampleLayer` as a sub-pixel convolution: one 3x3 conv of the small input, edge-padded by one
    pixel, to 4x the channels (a kernel per output phase, the same multiply-adds), then DEPTH_TO_SPACE.
    It equals resize, reflection pad and conv exactly (see `UPSAMPLE_TAPS`), without the four
    copies of the resized image."""

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return self.conv.finish(tf.nn.depth_to_space(self.phased_convolve(x), 2))

    def phased_convolve(self, x: tf.Tensor) -> tf.Tensor:
        """[N, H, W, C_in] -> the conv output before depth_to_space, [N, H, W, 4 C_out] (phase-major)."""
        channels_in, channels_out = self.conv.kernel.shape[2], self.conv.kernel.shape[3]
        for axis in (1, 2):  # Edge padding: the first and last line once more.
            first, last = (x[(slice(None),) * axis + (slice(index, index + 1 or None),)] for index in (0, -1))
            x = tf.concat([first, x, last], axis=axis)
        kernel = np.einsum("iak,jbl,klco->abcijo", UPSAMPLE_TAPS, UPSAMPLE_TAPS, self.conv.kernel.numpy())
        kernel = kernel.reshape([3, 3, channels_in, 4 * channels_out])
        return tf.nn.conv2d(x, kernel, strides=1, padding="VALID") + tf.tile(self.conv.bias, [4])


def tflite_converter(weights: dict) -> tf.lite.TFLiteConverter:
    """A converter of `litert_network` of `weights` (see `module_converter`)."""
    return module_converter(litert_network(weights))


def module_converter(network: tf.Module) -> tf.lite.TFLiteConverter:
    """A converter of a network module (float32 [1, H, W, 3] -> the same), traced for any H and W, builtin
    ops only; as it stands it writes the float32 file (callers add quantization options)."""
    spec = tf.TensorSpec([1, None, None, 3], tf.float32, name="images")
    function = tf.function(network, input_signature=[spec]).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], network)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def _concat(pieces: list[tf.Tensor], axis: int) -> tf.Tensor:
    return pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis=axis)


def litert_network(weights: dict) -> ReferenceTransformer:
    """The network of `weights` (a `TransformerNet.weights_dict()`) in the form the LiteRT export converts."""
    return ReferenceTransformer(weights, conv_layer=XNNPACKConvLayer, upsample_layer=XNNPACKUpsampleLayer,
                                name="litert_transformer", noise_scale=NOISE_SCALE)


MIN_SPREAD = 1e-3
"""`equalize_norm_inputs` divides no channel by less (a channel that is constant on every photo)."""


class _RecordingConvLayer(ConvLayer):
    """`ConvLayer` that appends each image's per-channel mean and standard deviation of its norm's input,
    float32 [C] each, to ``statistics[prefix]``."""

    def __init__(self, weights: dict, prefix: str, statistics: dict, **options):
        super().__init__(weights, prefix, **options)
        self.prefix, self.statistics = prefix, statistics

    def scaled_norm(self, x: tf.Tensor) -> tf.Tensor:
        mean, variance = tf.nn.moments(x, axes=[1, 2])
        self.statistics.setdefault(self.prefix, []).append((mean.numpy()[0], np.sqrt(variance.numpy()[0])))
        return super().scaled_norm(x)


def norm_input_statistics(weights: dict, images: Sequence[np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each instance norm's input (its conv's output) on `images`: ``{layer prefix: (mean, spread)}``, float32 [C]
    each, the per-channel mean and standard deviation of each image, averaged over the images.

    Args:
        weights: ``{path: array}`` as `TransformerNet.weights_dict` names them.
        images: float32 [H, W, 3] in [0, 255] each, any sizes.
    """
    statistics = {}
    network = ReferenceTransformer(weights, conv_layer=functools.partial(_RecordingConvLayer, statistics=statistics))
    for image in images:
        network(tf.constant(image[None], tf.float32))
    return {prefix: tuple(np.mean(np.stack(values), axis=0).astype(np.float32) for values in zip(*pairs))
            for prefix, pairs in statistics.items()}


def equalize_norm_inputs(weights: dict, images: Sequence[np.ndarray]) -> dict:
    """The same network with every instance norm's input channels centred and scaled to a spread of 1 on
    `images`, for full-integer quantization.

    Instance norm does not see a per-channel shift and scale of its input: ``(x - m) / sqrt(v + eps)``
    is the same for ``(x - mu) / s`` when eps becomes ``eps / s^2``. Folding mu and s into the conv
    before the norm (``kernel / s``, ``(bias - mu) / s``) and giving the norm that epsilon per channel
    (``prefix/epsilon``, which `ConvLayer` reads) leaves the function as it was. Unequalized, the
    channels of one conv output spread over a range of 10x or more and sit off zero, so the one int8
    range of the tensor, set by the widest, leaves few levels to the narrow channels, and the
    statistics (``E[x^2] - mean^2``) lose them.

    Args:
        weights: ``{path: array}`` as `TransformerNet.weights_dict` names them.
        images: float32 [H, W, 3] in [0, 255] each: the photos the quantization is calibrated on.

    Returns:
        New weights: changed kernels and biases of the normalized convs, and their ``prefix/epsilon``.
    """
    equalized = dict(weights)
    for prefix, (mean, spread) in norm_input_statistics(weights, images).items():
        spread = np.maximum(spread, MIN_SPREAD)
        equalized[f"{prefix}/kernel"] = (weights[f"{prefix}/kernel"] / spread).astype(np.float32)
        equalized[f"{prefix}/bias"] = ((weights[f"{prefix}/bias"] - mean) / spread).astype(np.float32)
        equalized[f"{prefix}/epsilon"] = (EPSILON / np.square(spread)).astype(np.float32)
    return equalized


class TilingStages(tf.Module):
    """The network cut where `impasto.model.feedforward.tiled_network` cuts it, as functions a ``.tflite``
    file holds as signatures.

    A tiled run normalizes every tile with the statistics of the whole image, which
    the single-signature file cannot take from outside. These stages can: each
    ``encode_K`` / ``decode_K`` takes the tile and the (mean, variance) of the norms
    before layer K and returns layer K's conv output before its norm (for the
    next statistics), or, for the last, the layer output the tiles assemble.
    `impasto.model.feedforward.litert_tiling` runs them. Inputs and outputs are float32 NHWC,
    any size; the statistics float32 [C].
    """

    def __init__(self, weights: dict):
        super().__init__(name="litert_tiling_stages")
        self.network = litert_network(weights)

    def encode(self, x: tf.Tensor, statistics: list, stop: int) -> tf.Tensor:
        """Prepared tile [1, h, w, 3 + noise channels] -> encoder layer `stop`'s conv output, before its norm."""
        for index, layer in enumerate(self.network.encoder):
            x = layer.convolve(x)
            if index == stop:
                return x
            x = layer.finish_with(x, *statistics[index])
        raise ValueError(f"no encoder layer {stop}")

    def transform(self, x: tf.Tensor) -> tf.Tensor:
        """The last encoder layer's norm (over the whole image) and the residual blocks."""
        x = self.network.encoder[-1].finish(x)
        for block in self.network.residuals:
            x = block(x)
        return x

    def decode(self, x: tf.Tensor, statistics: list, stop: int | None) -> tf.Tensor:
        """Residual output tile -> upsampling layer `stop`'s phased conv output before its norm
        ([1, h', w', 4C], as `TransformerNet.decode` gives it), or with `stop` None the image, [0, 255]."""
        for index, layer in enumerate(self.network.decoder):
            x = layer.phased_convolve(x)
            if index == stop:
                return x
            x = layer.conv.finish_with(tf.nn.depth_to_space(x, 2), *statistics[index])
        return 255.0 * tf.sigmoid(self.network.output_conv(x))

    def signatures(self) -> dict:
        """``{name: concrete function}`` of every stage, with named inputs (``images``, ``mean_K``, ``variance_K``)."""
        widths = [layer.kernel.shape[-1] for layer in self.network.encoder]
        up_widths = [layer.conv.kernel.shape[-1] for layer in self.network.decoder]
        functions = {"transform": (self.transform, [])}
        for stop in range(len(widths)):
            functions[f"encode_{stop}"] = (lambda x, *s, stop=stop: self.encode(x, _pairs(s), stop), widths[:stop])
        for stop in range(len(up_widths) + 1):
            last = stop == len(up_widths)
            functions[f"decode_{stop}"] = (lambda x, *s, stop=None if last else stop: self.decode(x, _pairs(s), stop),
                                           up_widths[:stop])
        concrete = {}
        input_channels = self.network.encoder[0].kernel.shape[2]  # RGB, and the noise channels if it reads noise
        for name, (function, statistics_widths) in functions.items():
            channels = input_channels if name.startswith("encode") else widths[-1]
            specs = [tf.TensorSpec([1, None, None, channels], tf.float32, name="images")]
            for index, width in enumerate(statistics_widths):
                specs += [tf.TensorSpec([width], tf.float32, name=f"mean_{index}"),
                          tf.TensorSpec([width], tf.float32, name=f"variance_{index}")]
            wrapped = tf.function(lambda *args, function=function: {"output": function(*args)}, input_signature=specs)
            concrete[name] = wrapped.get_concrete_function()
        return concrete


def _pairs(flat: tuple) -> list:
    return [(flat[index], flat[index + 1]) for index in range(0, len(flat), 2)]
