"""Seam-free tiled stylization of large images in LiteRT, from a tiling-stages ``.tflite`` file.

`impasto.model.feedforward.tiled_network` runs the network piecewise, every tile normalized with the
statistics of the whole image; a plain ``.tflite`` file cannot take statistics from
outside. Its tiling-stages companion (``NAME-VARIANT.tiles.tflite``, written by
``impasto export --format tflite`` from `impasto.model.feedforward.litert_network.TilingStages`)
holds one signature per stage, and `LiteRTStages` presents them as the stage methods
`tiling.tiled_stylize` calls, so the tiling, halos and statistics are the TensorFlow
path's own (run eagerly, each stage in LiteRT with XNNPACK).
"""

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from impasto.model.errors import InvalidInputError
from impasto.model.feedforward.layout import DECODER_KERNEL, ENCODER_KERNELS, OUTPUT_KERNEL
from impasto.model.feedforward.litert_network import NOISE_SCALE
from impasto.model.feedforward.litert_runtime import DEFAULT_THREADS
from impasto.model.feedforward.noise_input import append_noise, noise_texture
from impasto.model.feedforward.reference_transformer import _padded_side, _repeat_last_row_and_column
from impasto.model.feedforward.tiled_network import tiled_stylize
from impasto.model.tiling import DEFAULT_TILE_SIZE

STAGES = ("encode_0", "encode_1", "encode_2", "transform", "decode_0", "decode_1", "decode_2")
"""The signatures of a tiling-stages file."""


def stages_path(model_path: str | os.PathLike) -> Path:
    """The tiling-stages file beside a ``NAME-VARIANT.tflite`` file: ``NAME-VARIANT.tiles.tflite``."""
    return Path(model_path).with_suffix(".tiles.tflite")


class _Layer:
    """What `tiled_stylize` reads of a conv layer: its geometry, output width, and `finish` (inside the stages)."""

    def __init__(self, kernel_size: int, stride: int = 1, channels: int = 3):
        self.kernel_size, self.stride = kernel_size, stride
        self.kernel = tf.zeros([1, 1, 1, channels])
        self.conv = self  # An upsampling layer's conv, for the decoder's entries.

    @staticmethod
    def finish(x: tf.Tensor) -> tf.Tensor:
        return x


class LiteRTStages:
    """A tiling-stages file in a LiteRT interpreter, with the stage methods of `TransformerNet` that tiling uses.

    Raises:
        InvalidInputError: the file is missing, malformed, or lacks a stage.
    """

    compute_dtype = tf.float32

    def __init__(self, path: str | os.PathLike, threads: int = DEFAULT_THREADS):
        from ai_edge_litert.interpreter import Interpreter

        path = Path(path)
        if not path.is_file():
            raise InvalidInputError(f"{path}: no tiling-stages file (export it with `impasto export --format tflite`)")
        try:
            interpreter = Interpreter(model_path=str(path), num_threads=threads)
        except ValueError as error:
            raise InvalidInputError(f"{path}: not a valid LiteRT model ({error})") from None
        missing = set(STAGES) - set(interpreter.get_signature_list())
        if missing:
            raise InvalidInputError(f"{path}: not a tiling-stages file (no signatures {sorted(missing)})")
        self._runners = {name: interpreter.get_signature_runner(name) for name in STAGES}
        noise_channels = int(self._runners["encode_0"].get_input_details()["images"]["shape_signature"][-1]) - 3
        self._noise = tf.constant(noise_texture(noise_channels) * NOISE_SCALE) if noise_channels else None
        widths = [self._runners[f"encode_{index}"].get_output_details()["output"]["shape_signature"][-1]
                  for index in range(3)]
        self.encoder = [_Layer(kernel, stride, int(width)) for (kernel, stride), width in
                        zip(ENCODER_KERNELS, widths, strict=True)]
        self.decoder = [_Layer(DECODER_KERNEL), _Layer(DECODER_KERNEL)]
        self.output_conv = _Layer(OUTPUT_KERNEL)

    def _run(self, stage: str, x: tf.Tensor, statistics) -> tf.Tensor:
        inputs = {"images": np.asarray(x, np.float32)}
        for index, (mean, variance) in enumerate(statistics):
            inputs[f"mean_{index}"], inputs[f"variance_{index}"] = np.asarray(mean), np.asarray(variance)
        return tf.constant(self._runners[stage](**inputs)["output"])

    def prepare(self, images: tf.Tensor) -> tf.Tensor:
        """As `TransformerNet.prepare`: edge-padded to multiples of 4 (>= MIN_SIDE), in [-1, 1], the noise after
        the RGB channels if the network reads noise."""
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        prepared = _repeat_last_row_and_column(images, _padded_side(height), _padded_side(width)) / 127.5 - 1.0
        return prepared if self._noise is None else append_noise(prepared, self._noise)

    def encode(self, x: tf.Tensor, statistics=(), stop: int = 2) -> tf.Tensor:
        return self._run(f"encode_{stop}", x, statistics)

    def transform(self, x: tf.Tensor) -> tf.Tensor:
        return self._run("transform", x, ())

    def decode(self, x: tf.Tensor, statistics=(), stop: int | None = None) -> tf.Tensor:
        return self._run(f"decode_{len(self.decoder) if stop is None else stop}", x, statistics)


def litert_tiled_stylize(stages: LiteRTStages, image: np.ndarray, tile_size: int = DEFAULT_TILE_SIZE) -> np.ndarray:
    """Stylizes one float32 [H, W, 3] image in [0, 255] tile by tile, as the whole-image ``.tflite`` would."""
    return tiled_stylize(stages, tf.constant(image[None], tf.float32), tile_size)[0].numpy()
