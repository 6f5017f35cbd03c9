"""Perceptual losses, shared by the Gatys optimizer and feed-forward training.

Every loss is a pure function that takes ``{layer: weight}`` where it has
layers and returns ``(total, {name: term})``: the scalar to minimise and its
named, already weighted parts for logging. The parts always sum to the total.

Conventions:

* Gram matrix: ``G = F^T F / (H * W * C)`` for features ``F`` of shape
  ``[H * W, C]``, so it does not depend on the image size (style targets made
  at one size apply at another) and layers of different widths are comparable.
* Content term: mean squared feature difference, over all positions and channels.
* Style term: squared Frobenius norm of the Gram difference, averaged over the batch.
* Total variation: mean squared difference of neighbouring pixels (both axes), in
  pixel units of the [0, 255] contract.
"""

from collections.abc import Mapping

import tensorflow as tf

from impasto.model.lossnet.loss_config import LossConfig

LayerWeights = Mapping[str, float]


def gram_matrix(features: tf.Tensor) -> tf.Tensor:
    """Normalised Gram matrix of feature maps.

    The gradient is one matrix product, ``F (dG + dG^T) / (H * W * C)``, instead
    of the two (and a sum of two feature-sized tensors) that autodiff of
    ``F^T F`` would build. A batch of one, known when the graph is built, runs as
    a plain 2-D product, which is faster than a batched one on CPU.

    Args:
        features: [N, H, W, C] activations (any float dtype).

    Returns:
        float32 [N, C, C], ``G[n, i, j] = sum_hw F[n,h,w,i] F[n,h,w,j] / (H * W * C)``.
    """
    features = tf.cast(features, tf.float32)
    shape = tf.shape(features)
    inverse_size = 1.0 / tf.cast(shape[1] * shape[2] * shape[3], tf.float32)
    if features.shape[0] == 1:
        return tf.expand_dims(_symmetric_gram(tf.reshape(features, [-1, shape[3]]), inverse_size), 0)
    return _symmetric_gram(tf.reshape(features, [shape[0], -1, shape[3]]), inverse_size)


def _symmetric_gram(flat: tf.Tensor, inverse_size: tf.Tensor) -> tf.Tensor:
    """``flat^T flat * inverse_size`` for [..., P, C] ``flat``, with a one-product gradient."""

    @tf.custom_gradient
    def gram(flat):
        def gradient(upstream):
            return tf.matmul(flat, (upstream + tf.linalg.matrix_transpose(upstream)) * inverse_size)

        return tf.matmul(flat, flat, transpose_a=True) * inverse_size, gradient

    return gram(flat)


def _mean_square(tensor: tf.Tensor) -> tf.Tensor:
    """``reduce_mean(square(tensor))`` whose gradient is one multiplication (`tf.nn.l2_loss`)."""
    count = tf.cast(tf.maximum(tf.size(tensor), 1), tf.float32)
    return tf.nn.l2_loss(tensor) * (2.0 / count)


def content_loss(features: Mapping[str, tf.Tensor], content_targets: Mapping[str, tf.Tensor],
                 layer_weights: LayerWeights):
    """Weighted mean squared difference between features and content features.

    Args:
        features: ``{layer: [N, H, W, C]}`` of the image being made.
        content_targets: ``{layer: [N or 1, H, W, C]}`` of the content image(s).
        layer_weights: ``{layer: weight}``.

    Returns:
        ``(total, {"content/<layer>": weighted term})``, float32 scalars.
    """
    terms = {}
    for layer, weight in layer_weights.items():
        difference = tf.cast(features[layer], tf.float32) - tf.cast(content_targets[layer], tf.float32)
        terms[f"content/{layer}"] = weight * _mean_square(difference)
    return tf.add_n(list(terms.values())), terms


def style_loss(features: Mapping[str, tf.Tensor], style_grams: Mapping[str, tf.Tensor], layer_weights: LayerWeights):
    """Weighted squared Frobenius distance between Gram matrices and style Gram matrices.

    Args:
        features: ``{layer: [N, H, W, C]}`` of the image being made.
        style_grams: ``{layer: [1 or N, C, C]}`` target Gram matrices (see `gram_matrix`).
        layer_weights: ``{layer: weight}``.

    Returns:
        ``(total, {"style/<layer>": weighted term})``, float32 scalars.
    """
    return style_loss_from_grams({layer: gram_matrix(features[layer]) for layer in layer_weights}, style_grams,
                                 layer_weights)


def style_loss_from_grams(grams: Mapping[str, tf.Tensor], style_grams: Mapping[str, tf.Tensor],
                          layer_weights: LayerWeights):
    """`style_loss` from the image's Gram matrices (tiled evaluation sums them over tiles first).

    Args:
        grams: ``{layer: [N, C, C]}`` Gram matrices of the image being made.
        style_grams: ``{layer: [1 or N, C, C]}`` target Gram matrices.
        layer_weights: ``{layer: weight}``.

    Returns:
        ``(total, {"style/<layer>": weighted term})``, float32 scalars.
    """
    terms = {}
    for layer, weight in layer_weights.items():
        difference = grams[layer] - tf.cast(style_grams[layer], tf.float32)
        terms[f"style/{layer}"] = weight * tf.reduce_mean(tf.reduce_sum(tf.square(difference), axis=[1, 2]))
    return tf.add_n(list(terms.values())), terms


def total_variation_loss(images: tf.Tensor, weight: float):
    """Weighted mean squared difference between neighbouring pixels.

    Args:
        images: [N, H, W, 3] in [0, 255].
        weight: multiplier.

    Returns:
        ``(total, {"tv": total})``.
    """
    total = weight * _neighbour_mean_squares(tf.cast(images, tf.float32))
    return total, {"tv": total}


@tf.custom_gradient
def _neighbour_mean_squares(images: tf.Tensor):
    """Mean squared vertical plus mean squared horizontal neighbour difference.

    The gradient pads the differences back to the image's shape, which costs a
    small fraction of what autodiff's ``StridedSliceGrad`` ops cost.
    """
    down = images[:, 1:] - images[:, :-1]
    right = images[:, :, 1:] - images[:, :, :-1]
    down_scale = 2.0 / tf.cast(tf.maximum(tf.size(down), 1), tf.float32)
    right_scale = 2.0 / tf.cast(tf.maximum(tf.size(right), 1), tf.float32)

    def gradient(upstream):
        down_part = down * (upstream * down_scale)
        right_part = right * (upstream * right_scale)
        no_pad = [0, 0]
        return (
            tf.pad(down_part, [no_pad, [1, 0], no_pad, no_pad])
            - tf.pad(down_part, [no_pad, [0, 1], no_pad, no_pad])
            + tf.pad(right_part, [no_pad, no_pad, [1, 0], no_pad])
            - tf.pad(right_part, [no_pad, no_pad, [0, 1], no_pad])
        )

    value = tf.nn.l2_loss(down) * down_scale + tf.nn.l2_loss(right) * right_scale
    return value, gradient


Loss = tuple[tf.Tensor, dict[str, tf.Tensor]]
"""``(total, {name: term})``, what every loss function here returns."""


def combine_losses(content: Loss, style: Loss, tv: Loss) -> Loss:
    """The whole objective from its three parts: the total, and terms named as `LossConfig.term_names` lists them.

    Args:
        content, style, tv: what `content_loss`, `style_loss` (or `style_loss_from_grams`) and
            `total_variation_loss` return, or the same computed another way (by tiles).

    Returns:
        ``(total, terms)``: terms holds the ``content``, ``style`` and ``tv`` subtotals and every
        per-layer term.
    """
    (content_total, content_terms), (style_total, style_terms), (tv_total, tv_terms) = content, style, tv
    terms = {"content": content_total, "style": style_total, **tv_terms, **content_terms, **style_terms}
    return content_total + style_total + tv_total, terms


def style_transfer_loss(
    images: tf.Tensor,
    features: Mapping[str, tf.Tensor],
    content_targets: Mapping[str, tf.Tensor],
    style_grams: Mapping[str, tf.Tensor],
    config: LossConfig,
):
    """The whole objective: content + style + total variation.

    Args:
        images: [N, H, W, 3] the images being made (pixel contract).
        features: VGG features of `images` for ``config.all_layers``.
        content_targets: VGG features of the content images for the content layers.
        style_grams: Gram matrices of the style for the style layers.
        config: layers and weights.

    Returns:
        ``(total, terms)`` where terms holds ``content``, ``style`` and ``tv``
        subtotals and every per-layer term.
    """
    return combine_losses(content_loss(features, content_targets, config.content_layer_weights),
                          style_loss(features, style_grams, config.style_layer_weights),
                          total_variation_loss(images, config.tv_weight))
