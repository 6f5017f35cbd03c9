"""Optimization-based style transfer (Gatys et al. 2015), run as a TensorFlow graph.

The pixels of the output image are optimised (L-BFGS by default, Adam as an
option) against `losses.style_transfer_loss` on VGG features. Options: average
or max pooling, several styles with blend weights, style scale, init from the
content, noise or a file, luminance-only colour preservation, and a multiscale
pyramid where each stage starts from the upsampled result of the last.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from impasto.model import color, image_io
from impasto.model.lossnet.loss_config import LossConfig
from impasto.model.lossnet.losses import gram_matrix, style_transfer_loss
from impasto.model.lossnet.vgg import VggFeatures
from impasto.model.optimize.optimizers import OptimizerConfig, make_optimizer
from impasto.model.optimize.tiled_objective import make_tiled_objective, tiled_features, tiled_grams
from impasto.model.tiling import GATYS_TILE_PIXELS, Tiling

MIN_PYRAMID_SIZE = 64


@dataclass(frozen=True)
class GatysConfig:
    """Settings of the optimization method.

    Attributes:
        size: long side of the output, in pixels.
        iterations: optimizer iterations per pyramid stage.
        scales: pyramid stages; 1 = no pyramid, 3 = size/4 -> size/2 -> size.
        loss: layers and weights of the objective.
        optimizer: L-BFGS or Adam settings.
        pooling: VGG pooling, ``"avg"`` (Gatys et al.) or ``"max"``.
        init: ``"content"``, ``"noise"`` or a path to an image file.
        style_scale: style image long side as a multiple of the output's long side.
        preserve_color: transfer luminance only and keep the content's colours.
        seed: seeds the noise init.
        bounded: hold the pixels to the pixel contract's [0, 255] at every iteration (a box-constrained
            optimizer, `impasto.model.optimize.optimizers`), so that the image delivered is the one optimised.
            False optimises unconstrained pixels and clips the result at the end, as Gatys et al. did and
            as Johnson et al.'s baseline does; its clipped image scores well above its iterate.
        report_every: iterations between progress reports (one graph call each).
        tiling: stages (and style images) above its pixel count run VGG tile by tile
            (`impasto.model.optimize.tiled_objective`): the same objective, memory bounded by the tile.
    """

    size: int = 512
    iterations: int = 500
    scales: int = 1
    loss: LossConfig = field(default_factory=LossConfig.gatys)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    pooling: str = "avg"
    init: str = "content"
    style_scale: float = 1.0
    preserve_color: bool = False
    seed: int = 0
    bounded: bool = True
    report_every: int = 10
    tiling: Tiling = Tiling(tile_pixels=GATYS_TILE_PIXELS)

    @classmethod
    def tiny(cls) -> "GatysConfig":
        """64 px and 5 iterations, for tests."""
        return cls(size=64, iterations=5, report_every=5)

    def stage_sizes(self) -> list[int]:
        """Long sides of the pyramid stages, smallest first, e.g. [256, 512, 1024]."""
        sizes = [max(MIN_PYRAMID_SIZE, self.size // 2**k) for k in reversed(range(self.scales))]
        return sorted(set(sizes))


@dataclass(frozen=True)
class Progress:
    """What a progress callback sees after each chunk of iterations."""

    stage: int
    stages: int
    iteration: int
    iterations: int
    value: float
    terms: dict[str, float]
    image: Callable[[], np.ndarray]


def white_noise(shape, seed: int) -> np.ndarray:
    """The ``init="noise"`` start: float32 `shape`, uniform in [0, 255], from `seed`."""
    return np.random.default_rng(seed).uniform(0.0, 255.0, shape).astype(np.float32)


def blended_style_grams(vgg: VggFeatures, style_images: Sequence[np.ndarray], blend_weights: Sequence[float], layers,
                        tiling: Tiling = Tiling.never()):
    """Gram targets of several styles, mixed by blend weights (normalised to sum 1).

    With the squared-distance style loss, matching the blended Gram matrix has
    the same minimiser as the weighted sum of per-style losses.

    Args:
        tiling: style images it applies to are run through VGG tile by tile.

    Returns:
        ``{layer: [1, C, C]}``.
    """
    weights = np.asarray(blend_weights, dtype=np.float64)
    if len(weights) != len(style_images) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"need one non-negative blend weight per style image, got {list(blend_weights)}")
    weights = weights / weights.sum()
    grams = dict.fromkeys(layers, 0.0)
    for weight, style_image in zip(weights, style_images):
        if tiling.applies_to(*style_image.shape[:2]):
            style_grams = tiled_grams(vgg, style_image[None], layers, tiling.tile_size)
        else:
            features = vgg(tf.constant(style_image[None]), layers)
            style_grams = {layer: gram_matrix(features[layer]) for layer in layers}
        for layer in layers:
            grams[layer] += float(weight) * style_grams[layer]
    return grams


class GatysStylizer:
    """Stylizes one content image by optimising its pixels.

    Args:
        config: method settings.
        vgg: the loss network; by default ImageNet VGG16 with ``config.pooling``.
    """

    def __init__(self, config: GatysConfig, vgg: VggFeatures | None = None):
        self.config = config
        self.vgg = vgg or VggFeatures(pooling=config.pooling)

    def stylize(
        self,
        content_image: np.ndarray,
        style_images: Sequence[np.ndarray],
        blend_weights: Sequence[float] | None = None,
        init_image: np.ndarray | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> np.ndarray:
        """Runs every pyramid stage and returns the result at ``config.size``.

        Args:
            content_image: float32 [H, W, 3] in [0, 255].
            style_images: one or more float32 [Hs, Ws, 3] in [0, 255].
            blend_weights: one weight per style; equal weights by default.
            init_image: starting image when ``config.init`` is a file (any size).
            on_progress: called after every ``config.report_every`` iterations.

        Returns:
            float32 [H', W', 3] in [0, 255], long side ``config.size``.
        """
        config = self.config
        blend_weights = blend_weights or [1.0] * len(style_images)
        sizes = config.stage_sizes()
        image = None
        for stage, long_side in enumerate(sizes):
            content = image_io.resize_long_side(content_image, long_side)
            if image is None:
                image = self._initial_image(content, init_image)
            else:
                image = image_io.resize_image(image, *content.shape[:2])
            image = self._run_stage(content, style_images, blend_weights, image, stage, len(sizes), on_progress)
        return image

    def _initial_image(self, content: np.ndarray, init_image: np.ndarray | None) -> np.ndarray:
        if self.config.init == "content":
            return content
        if self.config.init == "noise":
            return white_noise(content.shape, self.config.seed)
        if init_image is None:
            raise ValueError("config.init names a file, but no init_image was given")
        return image_io.resize_image(init_image, *content.shape[:2])

    def _run_stage(self, content, style_images, blend_weights, image, stage, stages, on_progress) -> np.ndarray:
        config = self.config
        long_side = max(content.shape[:2])
        styles = [image_io.resize_long_side(s, max(16, round(long_side * config.style_scale))) for s in style_images]
        content_for_loss = content
        if config.preserve_color:
            content_for_loss = color.luminance_image(content).numpy()
            styles = [color.match_luminance(s[None], content[None])[0].numpy() for s in styles]
            image = color.luminance_image(image).numpy()
        loss_config = config.loss
        content_layers = [layer for layer, _ in loss_config.content_layers]
        style_layers = [layer for layer, _ in loss_config.style_layers]
        style_grams = blended_style_grams(self.vgg, styles, blend_weights, style_layers, config.tiling)
        if config.tiling.applies_to(*content.shape[:2]):
            tile_size = config.tiling.tile_size
            content_targets = tiled_features(self.vgg, tf.constant(content_for_loss[None]), content_layers, tile_size)
            objective, term_names = make_tiled_objective(self.vgg, content.shape, content_targets, style_grams,
                                                         loss_config, tile_size)
        else:
            content_targets = self.vgg(tf.constant(content_for_loss[None]), content_layers)
            objective, term_names = make_objective(self.vgg, content.shape, content_targets, style_grams, loss_config)

        bounds = image_io.PIXEL_RANGE if config.bounded else None
        optimizer = make_optimizer(objective, int(np.prod(content.shape)), len(term_names), config.optimizer, bounds)
        optimizer.start(image.reshape(-1))
        current_image = lambda: np.clip(optimizer.x.numpy().reshape(content.shape), 0.0, 255.0)  # noqa: E731
        done = 0
        while done < config.iterations:
            done += int(optimizer.run(tf.constant(min(config.report_every, config.iterations - done))))
            if on_progress:
                terms = dict(zip(term_names, optimizer.terms.numpy().tolist()))
                on_progress(Progress(stage, stages, done, config.iterations, float(optimizer.value), terms,
                                     current_image))
            if bool(optimizer.converged):
                break
        result = current_image()
        if config.preserve_color:
            result = color.transfer_luminance(result[None], content[None])[0].numpy()
        return result


def make_objective(vgg: VggFeatures, image_shape, content_targets, style_grams, loss_config: LossConfig):
    """The Gatys objective over a flat pixel vector.

    Args:
        vgg: loss network.
        image_shape: (H, W, 3) of the image being optimised.
        content_targets: ``{layer: [1, h, w, c]}``.
        style_grams: ``{layer: [1, c, c]}``.
        loss_config: layers and weights.

    Returns:
        ``(value_and_gradient, term_names)``: the callable takes x float32 [H*W*3]
        and returns (value, gradient [H*W*3], terms [len(term_names)]).
    """
    term_names = list(loss_config.term_names)
    shape = [1, *image_shape]

    def value_and_gradient(x: tf.Tensor):
        with tf.GradientTape() as tape:
            tape.watch(x)
            image = tf.reshape(x, shape)
            features = vgg(image, loss_config.all_layers)
            total, terms = style_transfer_loss(image, features, content_targets, style_grams, loss_config)
        gradient = tape.gradient(total, x)
        return total, gradient, tf.stack([terms[name] for name in term_names])

    return value_and_gradient, term_names
