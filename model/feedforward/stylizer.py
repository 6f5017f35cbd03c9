"""Feed-forward stylization with a trained `TransformerNet`: one forward pass per image."""

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from impasto.model import color
from impasto.model.feedforward import engines
from impasto.model.feedforward.tiled_network import tiled_function
from impasto.model.feedforward.transformer import TransformerNet
from impasto.model.tiling import Tiling

# On CPU, batches of images this large (pixels each) run one image at a time: a
# batch of one keeps the activations in cache and its instance norms need no batch
# folding; batching smaller images still pays (bench/speed.py measures both; the
# figures are in docs/benchmarks.md).
ONE_AT_A_TIME_PIXELS = 512 * 512


class FastStylizer:
    """Runs a trained network on images of any size, with the usual output controls.

    Args:
        network: a trained transformer.
        engine: what runs the network (`impasto.model.feedforward.engines`): ``tf``
            (TensorFlow with oneDNN, the default), ``tf_xla`` (XLA-compiled, one program per
            input shape), ``litert`` (LiteRT's XNNPACK) or ``auto``, the fastest on this CPU
            for each image size as measured once and cached (`engines.choose_engine`). Tiled
            images always run in TensorFlow without XLA (their loops have varying shapes).
        tiling: which images run tile by tile (see `impasto.model.feedforward.tiled_network`); the
            result is the same as untiled, with memory bounded by the tile size.
        report: with ``auto``, called with a line when the engines are being timed.

    Raises:
        InvalidInputError: an unknown engine, or ``litert`` without its runtime.
    """

    def __init__(self, network: TransformerNet, engine: str = "tf", tiling: Tiling = Tiling(),
                 report: Callable[[str], None] | None = None):
        self.network = network
        self.tiling = tiling
        self.engine = engines.check_engine(engine)
        self.choice = engines.choose_engine(network.width, report=report) if engine == engines.AUTO else None
        """With ``auto``, the calibration `engine_for` follows (`engines.EngineChoice`); else None."""
        self._runners = {}
        self._forward_tiled = tiled_function(network, tiling.tile_size)
        self._split_large_batches = not tf.config.list_logical_devices("GPU")

    def engine_for(self, height: int, width: int) -> str:
        """The engine that runs an untiled height x width image."""
        return self.choice.engine_for(height, width) if self.choice else self.engine

    def _forward(self, images: tf.Tensor, engine: str) -> tf.Tensor:
        if engine not in self._runners:
            self._runners[engine] = engines.make_runner(engine, self.network)
        return self._runners[engine](images)

    def _run_network(self, images: tf.Tensor) -> tf.Tensor:
        """The network on a batch: tiled, or one image at a time where `ONE_AT_A_TIME_PIXELS` says so."""
        batch, height, width = images.shape[:3]
        if None in (batch, height, width):
            return self._forward(images, "tf" if self.engine == engines.AUTO else self.engine)
        if self.tiling.applies_to(height, width):
            return tf.concat([self._forward_tiled(images[index:index + 1]) for index in range(batch)], axis=0)
        engine = self.engine_for(height, width)
        if self._split_large_batches and batch > 1 and height * width >= ONE_AT_A_TIME_PIXELS:
            return tf.concat([self._forward(images[index:index + 1], engine) for index in range(batch)], axis=0)
        return self._forward(images, engine)

    def stylize_batch(self, images: tf.Tensor, strength: float = 1.0, preserve_color: bool = False) -> tf.Tensor:
        """Stylizes a same-size batch.

        Args:
            images: float32 [N, H, W, 3] in [0, 255].
            strength: 0..1, blend from the content (0) to the full style (1).
            preserve_color: keep the content's colours and take only the luminance from the style.

        Returns:
            float32 [N, H, W, 3] in [0, 255].
        """
        images = tf.convert_to_tensor(images, tf.float32)
        return apply_output_controls(self._run_network(images), images, strength, preserve_color)

    def stylize(self, image: np.ndarray, **options) -> np.ndarray:
        """Stylizes one float32 [H, W, 3] image in [0, 255]; returns the same shape."""
        return self.stylize_batch(image[None], **options)[0].numpy()


def apply_output_controls(stylized: tf.Tensor, images: tf.Tensor, strength: float = 1.0,
                          preserve_color: bool = False) -> tf.Tensor:
    """The network's output `stylized` for `images` (float32 [N, H, W, 3] in [0, 255] both) after the
    `FastStylizer.stylize_batch` options, clipped to [0, 255]."""
    if preserve_color:
        stylized = color.transfer_luminance(stylized, images)
    if strength != 1.0:
        stylized = color.blend(stylized, images, strength)
    return tf.clip_by_value(stylized, 0.0, 255.0)
