"""Padding by gathering: each padded axis is a vector of source indices, one gather per axis applies it.

One home for the index rules the network and the export use: edge (repeat the last
row or column), reflect (mirror without the edge row, as MirrorPad's REFLECT) and
mirror (with the edge row, any amount, as numpy's ``symmetric``). A gather of whole
rows and columns is several times faster on CPU than MirrorPad, which copies element
by element, and its indices can end the image early (at a ``valid`` size) so that
bucket padding beyond it is replaced by what padding at that edge would give.
tests/test_padding.py holds each rule equal to numpy's ``np.pad``.
"""

import tensorflow as tf


def edge_indices(target: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """int32 [target]: ``0, 1, ..., valid - 1, valid - 1, ...``, the source of each edge-padded position."""
    return tf.minimum(tf.range(target), valid - 1)


def reflect_indices(size: tf.Tensor, pad: int, valid: tf.Tensor | None = None) -> tf.Tensor:
    """int32 [size + 2 pad]: the source of each position of a reflection-padded axis (``[1, 0, 1, ...]`` for pad 1).

    With `valid` (at least 2), the axis reflects at `valid` instead of `size`
    (periodically, so every one of the ``size + 2 pad`` positions has a source).
    """
    if valid is None:
        index = tf.abs(tf.range(-pad, size + pad))
        return (size - 1) - tf.abs((size - 1) - index)
    period = 2 * (valid - 1)
    index = tf.math.floormod(tf.range(-pad, size + pad), period)
    return tf.where(index < valid, index, period - index)


def mirror_indices(size: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """int32 [target]: ``0, 1, ..., size - 1, size - 1, ..., 0, 0, 1, ...`` (period 2 size)."""
    position = tf.range(target) % (2 * size)
    return tf.where(position < size, position, 2 * size - 1 - position)


def gather_rows_and_columns(images: tf.Tensor, rows: tf.Tensor, columns: tf.Tensor) -> tf.Tensor:
    """``images[:, rows][:, :, columns]``: [N, H, W, C] -> [N, len(rows), len(columns), C]."""
    return tf.gather(tf.gather(images, rows, axis=1), columns, axis=2)


def edge_pad(images: tf.Tensor, height: tf.Tensor, width: tf.Tensor, valid: tf.Tensor | None = None) -> tf.Tensor:
    """Pads [N, H, W, C] to `height` x `width` at the bottom and right by repeating the last row and column.

    With `valid` (int32 [2]), the image ends there: what lies beyond is replaced too.
    """
    valid = tf.shape(images)[1:3] if valid is None else valid
    return gather_rows_and_columns(images, edge_indices(height, valid[0]), edge_indices(width, valid[1]))


def mirror_pad(images: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Pads [N, h, w, C] to [N, height, width, C] by mirroring (edge row included), any amount.

    Mirroring keeps the colour statistics that instance normalisation sees close to
    the image's own, even when the padding is larger than the image.
    """
    shape = tf.shape(images)
    return gather_rows_and_columns(images, mirror_indices(shape[1], height), mirror_indices(shape[2], width))
