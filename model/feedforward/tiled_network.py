"""Seam-free tiled feed-forward stylization of images too large to run whole.

Per-tile instance-norm statistics are what make seams in hand-tiled results: each
tile gets its own colour balance. Here every tile normalizes with the statistics of
the whole image, accumulated over all tiles first, so the result equals the untiled
network's to float rounding (tests/test_tiling.py asserts it), and tiles need no
blending: the halo around each tile is wide enough for the layers of that pass, so
both tiles compute the same values in an overlap and the halo is cropped.

The network (see `TransformerNet`) runs in three parts:

1. Encoder, on tiles of the full-resolution image (halo `encoder_halo` pixels):
   one pass per instance norm to accumulate its statistics over all tiles (the
   norms before it use the statistics already known), then a pass that writes the
   third conv's output, [1, H/4, W/4, C3], whole.
2. Residual blocks on that quarter-resolution tensor, whole: their instance norms
   see the whole image, so they need nothing special.
3. Decoder, on tiles of the residual output (halo `decoder_halo` quarter-resolution
   pixels): a statistics pass per upsampling stage, then the pass that writes the
   output tiles.

That costs about 1.5 untiled forward passes (the first layers and the decoder run
more than once). Memory is bounded by the tile size for everything at full and half
resolution; the quarter-resolution tensors (C3 / 16 floats per input pixel) and the
input and output images themselves remain proportional to the image.

Every loop here is an explicit `tf.while_loop` over tiles, so the same code runs
eagerly, in any `tf.function` and inside the exported SavedModel (not XLA-compiled:
shapes vary).
"""

import math

import tensorflow as tf

from impasto.model.feedforward.transformer import TransformerNet
from impasto.model.tile_grid import assemble_tiles, core_of, read_tile, tile_count
from impasto.model.tiling import DEFAULT_TILE_SIZE, Tiling

# A tile's own edge is padded as if it were the image's edge, so the values near it
# are wrong, and each layer spreads them further in. A halo as wide as that spread
# is cropped away, leaving the core exactly as the whole image would give it. The
# two functions below follow the spread through the network's layers.


def encoder_halo(network: TransformerNet) -> int:
    """Full-resolution pixels around an encoder tile: the encoder's spread, in whole output pixels.

    A conv of radius r and stride s turns p wrong input pixels into ceil((p + r) / s)
    wrong outputs. For Johnson et al.'s encoder (9x9, then two 3x3 of stride 2):
    4, then 3, then 2 quarter-resolution pixels, so 8 full-resolution pixels (a
    multiple of the encoder's stride, as tile positions must be).
    """
    wrong, stride = 0, 1
    for layer in network.encoder:
        wrong = math.ceil((wrong + layer.kernel_size // 2) / layer.stride)
        stride *= layer.stride
    return wrong * stride


def decoder_halo(network: TransformerNet) -> int:
    """Quarter-resolution pixels around a decoder tile: the decoder's spread, rounded up to them.

    A x2 nearest upsampling followed by a conv of radius r turns p wrong pixels into
    2 p + r; the output conv adds its radius. For Johnson et al.'s decoder (two
    upsamplings with 3x3 convs, then 9x9): 1, 3, then 7 full-resolution pixels,
    so 2 quarter-resolution pixels.
    """
    wrong = 0
    for layer in network.decoder:
        wrong = 2 * wrong + layer.conv.kernel_size // 2
    wrong += network.output_conv.kernel_size // 2
    return math.ceil(wrong / 2 ** len(network.decoder))



def tiled_stylize(network: TransformerNet, images: tf.Tensor, tile_size: int = DEFAULT_TILE_SIZE) -> tf.Tensor:
    """Stylizes one image tile by tile, as `network(images)` would whole.

    Args:
        network: the trained transformer.
        images: float32 [1, H, W, 3], RGB in [0, 255].
        tile_size: core side of each full-resolution tile (multiple of 4, >= 16).

    Returns:
        float32 [1, H, W, 3], RGB in [0, 255].
    """
    core = Tiling(tile_size=tile_size).tile_size
    images = tf.convert_to_tensor(images, tf.float32)
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    prepared = network.prepare(images)
    halo = encoder_halo(network)

    encoder_statistics = []
    for layer in range(len(network.encoder) - 1):
        known = tuple(encoder_statistics)
        encoder_statistics.append(_moments_over_tiles(
            prepared, core, halo,
            lambda tile, known=known, layer=layer: network.encode(tile, known, stop=layer),
            scale=(1, 2 ** layer), groups=1))
    known = tuple(encoder_statistics)
    last = len(network.encoder) - 1
    encoded = assemble_tiles(prepared, core, halo,
                              lambda tile: network.encode(tile, known, stop=last), scale=(1, 4),
                              dtype=network.compute_dtype, channels=network.encoder[last].kernel.shape[-1])
    residual = network.transform(network.encoder[last].finish(encoded))

    halo = decoder_halo(network)
    decoder_statistics = []
    for layer in range(len(network.decoder)):
        known = tuple(decoder_statistics)
        decoder_statistics.append(_moments_over_tiles(
            residual, core // 4, halo,
            lambda tile, known=known, layer=layer: network.decode(tile, known, stop=layer),
            scale=(2 ** layer, 1), groups=4))
    known = tuple(decoder_statistics)
    stylized = assemble_tiles(residual, core // 4, halo, lambda tile: network.decode(tile, known),
                               scale=(4, 1), dtype=tf.float32, channels=3)
    return stylized[:, :height, :width, :]


def tiled_function(network: TransformerNet, tile_size: int = DEFAULT_TILE_SIZE, inline: bool = True):
    """`tiled_stylize` as one `tf.function` of float32 [1, H, W, 3] images, traced once for every size.

    Args:
        inline: False marks the function ``_noinline``: a graph that calls it keeps the call,
            and TensorFlow builds and optimizes the function on its first call, not with the caller.
    """
    return tf.function(lambda images: tiled_stylize(network, images, tile_size),
                       input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)],
                       experimental_attributes=None if inline else {"_noinline": True})


def _moments_over_tiles(source: tf.Tensor, core: int, halo: int, layer_output, scale: tuple[int, int],
                        groups: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-channel mean and (biased) variance of `layer_output` over the whole image, tile by tile.

    Args:
        source: [1, H, W, C] the tiles are cut from.
        layer_output: tile [1, h, w, C] -> the layer's output before its instance norm,
            [1, h', w', groups * C'] (`groups` phases of C' channels, see `_instance_norm`).
        scale: (numerator, denominator), output pixels per source pixel along each axis.

    Returns:
        (mean, variance), float32 [C'] each. Tiles are combined in float64 by Chan's
        parallel formula, so sums over millions of pixels stay accurate.
    """
    rows, columns = tile_count(tf.shape(source)[1], core), tile_count(tf.shape(source)[2], core)

    def tile_moments(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        tile, offset, size = read_tile(source, index // columns, index % columns, core, halo)
        output = core_of(layer_output(tile), offset, size, scale)
        values = tf.cast(tf.reshape(output, [-1, output.shape[-1] // groups]), tf.float64)
        mean = tf.reduce_mean(values, axis=0)
        return tf.cast(tf.shape(values)[0], tf.float64), mean, tf.reduce_sum(tf.square(values - mean), axis=0)

    def combine(index, count, mean, m2):
        tile_pixels, tile_mean, tile_m2 = tile_moments(index)
        total = count + tile_pixels
        delta = tile_mean - mean
        return (index + 1, total, mean + delta * tile_pixels / total,
                m2 + tile_m2 + tf.square(delta) * count * tile_pixels / total)

    first = tile_moments(tf.constant(0))  # Shapes the loop variables.
    _, count, mean, m2 = tf.while_loop(lambda index, *_: index < rows * columns, combine, (tf.constant(1), *first),
                                       parallel_iterations=1)
    return tf.cast(mean, tf.float32), tf.cast(m2 / count, tf.float32)
