"""The Gatys objective evaluated tile by tile, for pyramid stages too large for VGG whole.

Every term of the objective is a sum over feature positions (a Gram matrix is a sum
of outer products; a content term a sum of squares), so it splits over tiles if
each feature position belongs to exactly one tile (its core) and is computed
exactly there: the halo around a tile covers the receptive field of the deepest
layer used, and tile offsets are multiples of VGG's largest stride (16).

One evaluation makes two passes over the tiles:

1. Forward only: each style layer's Gram matrix, as the sum of the tiles' core
   Gram matrices weighted by their share of the positions, and each content term
   the same way. Then the style loss from those Gram matrices and its gradient with
   respect to each of them (`losses.style_loss_from_grams`, the function the
   untiled objective uses too).
2. Forward and backward: per tile, the gradient of ``sum_l <dL/dG_l, G_l(tile)> +
   content(tile)`` with respect to the tile's pixels, halo included, added into the
   image's gradient. The sum over tiles is exactly the objective's gradient.

Total variation is cheap and runs on the whole image. Memory: VGG activations of
one tile, plus image-sized tensors (image, gradient, optimizer history) and the
content targets (block4_conv2 is 1/64 of the pixels x 512 channels).
"""

import tensorflow as tf

from impasto.model.errors import InvalidInputError
from impasto.model.lossnet.losses import (
    LossConfig,
    combine_losses,
    content_loss,
    gram_matrix,
    style_loss_from_grams,
    total_variation_loss,
)
from impasto.model.lossnet.vgg import VggFeatures, layer_stride
from impasto.model.tile_grid import assemble_tiles, core_of, read_tile, tile_count

STRIDE = 16
"""VGG's largest stride: tile cores and halos are multiples of it."""


def vgg_halo(vgg: VggFeatures, layers) -> int:
    """The halo, a multiple of `STRIDE`, that covers the receptive field of every layer in `layers`."""
    radius = max(vgg.receptive_radius(layer) for layer in layers)
    return -(-radius // STRIDE) * STRIDE


def check_tile_size(tile_size: int) -> int:
    """Returns `tile_size` if it is a multiple of `STRIDE`; raises InvalidInputError if not."""
    if tile_size % STRIDE:
        raise InvalidInputError(f"optimize tiles must be a multiple of {STRIDE} pixels, not {tile_size}")
    return tile_size


def tiled_features(vgg: VggFeatures, image: tf.Tensor, layers, tile_size: int) -> dict[str, tf.Tensor]:
    """`vgg(image, layers)`, computed tile by tile: ``{layer: [1, h, w, C]}``, same as whole."""
    core, halo = check_tile_size(tile_size), vgg_halo(vgg, layers)
    return {layer: assemble_tiles(image, core, halo, lambda tile, layer=layer: vgg(tile, [layer])[layer],
                                  scale=(1, layer_stride(layer)), dtype=vgg.compute_dtype,
                                  channels=vgg.kernel_shapes[layer][3])
            for layer in layers}


class _TileCores:
    """VGG features of the tiles of one image, cropped to each tile's core."""

    def __init__(self, vgg: VggFeatures, image: tf.Tensor, layers, tile_size: int):
        self.vgg, self.image, self.layers = vgg, image, tuple(layers)
        self.core, self.halo = check_tile_size(tile_size), vgg_halo(vgg, self.layers)
        height, width = tf.shape(image)[1], tf.shape(image)[2]
        self.columns = tile_count(width, self.core)
        self.count = tile_count(height, self.core) * self.columns
        self.positions = {layer: tf.cast(-(-height // layer_stride(layer)) * (-(-width // layer_stride(layer))),
                                         tf.float32) for layer in self.layers}

    def read(self, index: tf.Tensor) -> tuple[tf.Tensor, tuple, tuple, tuple]:
        """(tile with halo, core offset in it, core size, core's top-left pixel in the image)."""
        row, column = index // self.columns, index % self.columns
        tile, offset, size = read_tile(self.image, row, column, self.core, self.halo)
        return tile, offset, size, (row * self.core, column * self.core)

    def cores(self, tile: tf.Tensor, offset, size) -> dict[str, tuple[tf.Tensor, tf.Tensor]]:
        """``{layer: (core features [1, h, w, C], share)}``: share = the core's fraction of the layer's positions."""
        features = self.vgg(tile, self.layers)
        result = {}
        for layer in self.layers:
            core = core_of(features[layer], offset, size, (1, layer_stride(layer)))
            share = tf.cast(tf.shape(core)[1] * tf.shape(core)[2], tf.float32) / self.positions[layer]
            result[layer] = (core, share)
        return result

    def grams(self, cores, layers) -> dict[str, tf.Tensor]:
        """``{layer: the core's Gram matrix times its share}`` [1, C, C]: summed over tiles, the image's."""
        return {layer: gram_matrix(cores[layer][0]) * cores[layer][1] for layer in layers}

    def zero_grams(self, layers) -> dict[str, tf.Tensor]:
        """Zeros shaped like `grams`: where a sum over tiles starts."""
        return {layer: tf.zeros([1, self.vgg.kernel_shapes[layer][3], self.vgg.kernel_shapes[layer][3]])
                for layer in layers}

    def total(self, per_tile, initial):
        """Sum over all tiles of ``per_tile(index)``, a structure like `initial` (one tile at a time)."""
        def body(index, total):
            return index + 1, tf.nest.map_structure(tf.add, total, per_tile(index))

        _, total = tf.while_loop(lambda index, _: index < self.count, body, (tf.constant(0), initial),
                                 parallel_iterations=1)
        return total


def tiled_grams(vgg: VggFeatures, image: tf.Tensor, layers, tile_size: int) -> dict[str, tf.Tensor]:
    """``{layer: gram_matrix(vgg(image)[layer])}`` [1, C, C], computed tile by tile."""
    tiles = _TileCores(vgg, tf.convert_to_tensor(image, tf.float32), layers, tile_size)

    def per_tile(index):
        tile, offset, size, _ = tiles.read(index)
        return tiles.grams(tiles.cores(tile, offset, size), tiles.layers)

    return tiles.total(per_tile, tiles.zero_grams(tiles.layers))


def make_tiled_objective(vgg: VggFeatures, image_shape, content_targets, style_grams, loss_config: LossConfig,
                         tile_size: int):
    """`gatys.make_objective`, evaluated tile by tile: same value, gradient and terms.

    Args:
        vgg: loss network.
        image_shape: (H, W, 3) of the image being optimised.
        content_targets: ``{layer: [1, h, w, c]}`` of the whole content image.
        style_grams: ``{layer: [1, c, c]}``.
        loss_config: layers and weights.
        tile_size: core side of a tile, a multiple of 16.

    Returns:
        ``(value_and_gradient, term_names)`` as `gatys.make_objective` returns them.
    """
    content_weights, style_weights = loss_config.content_layer_weights, loss_config.style_layer_weights
    shape = [1, *image_shape]

    def tile_content_terms(cores, top_left) -> dict[str, tf.Tensor]:
        terms = {}
        for layer, weight in content_weights.items():
            core, share = cores[layer]
            top, left = (value // layer_stride(layer) for value in top_left)
            target = content_targets[layer][:, top:top + tf.shape(core)[1], left:left + tf.shape(core)[2], :]
            _, layer_terms = content_loss({layer: core}, {layer: target}, {layer: weight})
            terms.update({name: term * share for name, term in layer_terms.items()})
        return terms

    def value_and_gradient(x: tf.Tensor):
        image = tf.reshape(x, shape)
        tiles = _TileCores(vgg, image, loss_config.all_layers, tile_size)

        def statistics(index):  # Pass 1: Gram matrices and content terms.
            tile, offset, size, top_left = tiles.read(index)
            cores = tiles.cores(tile, offset, size)
            return tiles.grams(cores, style_weights), tile_content_terms(cores, top_left)

        zero_terms = {f"content/{layer}": tf.constant(0.0) for layer in content_weights}
        grams, content_terms = tiles.total(statistics, (tiles.zero_grams(style_weights), zero_terms))
        with tf.GradientTape() as tape:
            tape.watch(grams)
            style_total, style_terms = style_loss_from_grams(grams, style_grams, style_weights)
        gram_gradients = tape.gradient(style_total, grams)
        with tf.GradientTape() as tape:
            tape.watch(image)
            tv_total, tv_terms = total_variation_loss(image, loss_config.tv_weight)
        tv_gradient = tape.gradient(tv_total, image)

        def gradient_of_tile(index):  # Pass 2: the surrogate's gradient, halo included, placed in the image.
            tile, offset, size, top_left = tiles.read(index)
            with tf.GradientTape() as tape:
                tape.watch(tile)
                cores = tiles.cores(tile, offset, size)
                tile_grams = tiles.grams(cores, style_weights)
                style_part = [tf.reduce_sum(gram_gradients[layer] * tile_grams[layer]) for layer in style_weights]
                surrogate = tf.add_n(style_part + list(tile_content_terms(cores, top_left).values()))
            tile_gradient = tape.gradient(surrogate, tile)
            read_top = top_left[0] - offset[0]
            read_left = top_left[1] - offset[1]
            after = tf.shape(image)[1:3] - [read_top, read_left] - tf.shape(tile)[1:3]
            return tf.pad(tile_gradient, [[0, 0], [read_top, after[0]], [read_left, after[1]], [0, 0]])

        gradient = tiles.total(gradient_of_tile, tv_gradient)
        total, terms = combine_losses((tf.add_n(list(content_terms.values())), content_terms),
                                      (style_total, style_terms), (tv_total, tv_terms))
        return total, tf.reshape(gradient, [-1]), tf.stack([terms[name] for name in loss_config.term_names])

    return value_and_gradient, list(loss_config.term_names)
