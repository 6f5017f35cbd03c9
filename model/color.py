"""Colour-space helpers for luminance-only transfer (Gatys et al. 2016, "Preserving colour").

All functions take and return tensors in the pixel contract ([..., 3], RGB,
float32 [0, 255]) and work both eagerly and inside graphs.
"""

import tensorflow as tf

_RGB_TO_YIQ = tf.constant(
    [[0.299, 0.596, 0.211], [0.587, -0.274, -0.523], [0.114, -0.322, 0.312]], dtype=tf.float32
)


def rgb_to_yiq(images: tf.Tensor) -> tf.Tensor:
    """[..., 3] RGB -> [..., 3] YIQ (Y in [0, 255])."""
    return tf.tensordot(tf.cast(images, tf.float32), _RGB_TO_YIQ, axes=1)


def yiq_to_rgb(images: tf.Tensor) -> tf.Tensor:
    """[..., 3] YIQ -> [..., 3] RGB, clipped to [0, 255]."""
    return tf.clip_by_value(tf.tensordot(images, tf.linalg.inv(_RGB_TO_YIQ), axes=1), 0.0, 255.0)


def luminance_image(images: tf.Tensor) -> tf.Tensor:
    """[..., 3] RGB -> [..., 3] grey image whose three channels are the luminance Y."""
    luminance = rgb_to_yiq(images)[..., :1]
    return tf.concat([luminance] * 3, axis=-1)


def match_luminance(style_images: tf.Tensor, content_images: tf.Tensor) -> tf.Tensor:
    """Luminance of the style, shifted and scaled to the content's luminance mean and std.

    Args:
        style_images: [N, H1, W1, 3] RGB.
        content_images: [N or 1, H2, W2, 3] RGB.

    Returns:
        [N, H1, W1, 3] grey images (three equal channels).
    """
    style_y = rgb_to_yiq(style_images)[..., 0]
    content_y = rgb_to_yiq(content_images)[..., 0]
    style_mean, style_var = tf.nn.moments(style_y, axes=[-2, -1], keepdims=True)
    content_mean, content_var = tf.nn.moments(content_y, axes=[-2, -1], keepdims=True)
    matched = (style_y - style_mean) * tf.sqrt(content_var / (style_var + 1e-6)) + content_mean
    return tf.stack([tf.clip_by_value(matched, 0.0, 255.0)] * 3, axis=-1)


def transfer_luminance(stylized_images: tf.Tensor, content_images: tf.Tensor) -> tf.Tensor:
    """Luminance of `stylized_images` with the chrominance (I, Q) of `content_images`.

    Both [N, H, W, 3] RGB of the same size; returns [N, H, W, 3] RGB.
    """
    stylized_y = rgb_to_yiq(stylized_images)[..., :1]
    content_iq = rgb_to_yiq(content_images)[..., 1:]
    return yiq_to_rgb(tf.concat([stylized_y, content_iq], axis=-1))


def blend(stylized_images: tf.Tensor, content_images: tf.Tensor, strength: tf.Tensor) -> tf.Tensor:
    """``strength * stylized + (1 - strength) * content``; strength 0..1 (scalar or [N])."""
    strength = tf.reshape(tf.cast(strength, tf.float32), [-1, 1, 1, 1])
    return strength * stylized_images + (1.0 - strength) * content_images
