"""Cutting an image into tiles with a halo, and putting per-tile results back together.

A tile is a core of `core` x `core` pixels (smaller at the right and bottom edges)
plus a halo of `halo` pixels on each side, clipped to the image. A computation
whose reach (receptive field radius) is at most the halo gives, inside the core,
exactly what it gives on the whole image, provided tile offsets respect its
strides (cores and halos here are multiples of the largest stride).
Every loop is an explicit `tf.while_loop` (one tile at a time), so the code runs
the same eagerly, in any `tf.function` (autograph or not) and in a SavedModel.

`impasto.model.tiling` says when an image is tiled and how large its tiles are.
"""

import tensorflow as tf


def tile_count(length: tf.Tensor, core: int) -> tf.Tensor:
    """Tiles along an axis of `length` pixels."""
    return (length + core - 1) // core


def read_tile(source: tf.Tensor, row: tf.Tensor, column: tf.Tensor, core: int, halo: int):
    """The tile at (row, column) of `source` [1, H, W, C] with its halo (clipped to the image).

    Returns:
        (tile [1, h, w, C], core offset (y, x) inside the tile, core size (height, width)).
    """
    height, width = tf.shape(source)[1], tf.shape(source)[2]
    top, left = row * core, column * core
    bottom, right = tf.minimum(top + core, height), tf.minimum(left + core, width)
    read_top, read_left = tf.maximum(0, top - halo), tf.maximum(0, left - halo)
    read_bottom, read_right = tf.minimum(height, bottom + halo), tf.minimum(width, right + halo)
    tile = source[:, read_top:read_bottom, read_left:read_right, :]
    return tile, (top - read_top, left - read_left), (bottom - top, right - left)


def core_of(output: tf.Tensor, offset, size, scale: tuple[int, int]) -> tf.Tensor:
    """Crops a tile's output to its core.

    Args:
        output: [1, h, w, C] computed from a tile returned by `read_tile`.
        offset, size: the core's position and size in the tile, from `read_tile`.
        scale: (numerator, denominator), output pixels per source pixel; the core's
            offset must be a whole number of output pixels, and a fractional size
            rounds up (as SAME pooling of an odd size does).
    """
    numerator, denominator = scale
    top, left = (value * numerator // denominator for value in offset)
    height, width = ((value * numerator + denominator - 1) // denominator for value in size)
    return output[:, top:top + height, left:left + width, :]


def assemble_tiles(source: tf.Tensor, core: int, halo: int, layer_output, scale: tuple[int, int],
                   dtype: tf.DType, channels: int) -> tf.Tensor:
    """`layer_output` of the whole `source`, computed tile by tile and put back together.

    Args:
        source: [1, H, W, C] the tiles are cut from.
        layer_output: tile [1, h, w, C] -> [1, h * s, w * s, C'] for the scale s of `scale`.
        scale: (numerator, denominator), output pixels per source pixel along each axis.
        dtype, channels: the output's dtype and channel count C'.

    Returns:
        [1, H * s, W * s, C'].
    """
    rows, columns = tile_count(tf.shape(source)[1], core), tile_count(tf.shape(source)[2], core)

    def pieces_array(size) -> tf.TensorArray:
        return tf.TensorArray(dtype, size=size, infer_shape=False, element_shape=[None, None, channels])

    def strip(row: tf.Tensor) -> tf.Tensor:
        def next_piece(column, pieces):
            tile, offset, size = read_tile(source, row, column, core, halo)
            piece = core_of(layer_output(tile), offset, size, scale)[0]
            return column + 1, pieces.write(column, tf.transpose(piece, [1, 0, 2]))  # Concatenated along axis 0.

        _, pieces = tf.while_loop(lambda column, _: column < columns, next_piece,
                                  (tf.constant(0), pieces_array(columns)), parallel_iterations=1)
        return tf.transpose(pieces.concat(), [1, 0, 2])

    _, strips = tf.while_loop(lambda row, _: row < rows, lambda row, strips: (row + 1, strips.write(row, strip(row))),
                              (tf.constant(0), pieces_array(rows)), parallel_iterations=1)
    return strips.concat()[None]
