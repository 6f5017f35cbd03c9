"""Runs an exported transformer network (a ``.tflite`` file) in the LiteRT runtime, ``ai-edge-litert``.

The files come from ``impasto export --format tflite`` (`impasto.export.litert`);
all of them share one input contract, `INPUT_SHAPE` float32 RGB in [0, 255], any
height and width, and give the same shape and range out. The interpreter runs
with XNNPACK (LiteRT's default CPU delegate) and is resized to each input size.
"""

import os
from pathlib import Path

import numpy as np

from impasto.model.errors import InvalidInputError
from impasto.model.tiling import Tiling

INPUT_SHAPE = (1, -1, -1, 3)
"""Every exported file's input and output: [1, H, W, 3] (-1: any size), float32 RGB in [0, 255]."""

DEFAULT_THREADS = 2


class LiteRTStylizer:
    """One ``.tflite`` stylization network in a LiteRT interpreter.

    Args:
        path: the ``.tflite`` file (with `content`: only the name errors give).
        threads: CPU threads for XNNPACK.
        tiling: when `stylize` runs tile by tile, from the tiling-stages file beside `path`
            (`impasto.model.feedforward.litert_tiling`); the result is the same as untiled. Without that
            file images run whole, unless tiling was asked for (`Tiling.always`): then the
            file is required.
        content: the file's bytes, already in memory (then images always run whole).

    Raises:
        InvalidInputError: the file is missing, not a LiteRT model (malformed or
            truncated), or not a network with `INPUT_SHAPE` in and out; or tiling is
            always asked for and the tiling-stages file is missing or bad.
    """

    def __init__(self, path: str | os.PathLike, threads: int = DEFAULT_THREADS, tiling: Tiling = Tiling.never(),
                 content: bytes | None = None):
        from ai_edge_litert.interpreter import Interpreter

        from impasto.model.feedforward.litert_tiling import LiteRTStages, stages_path

        self.path = Path(path)
        if content is None and not self.path.is_file():
            raise InvalidInputError(f"{self.path}: no such .tflite file")
        try:
            self._interpreter = Interpreter(model_path=None if content else str(self.path), model_content=content,
                                            num_threads=threads)
        except ValueError as error:
            raise InvalidInputError(f"{self.path}: not a valid LiteRT model ({error}); "
                                    "re-export it with `impasto export --format tflite`") from None
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        shapes = [tuple(detail["shape_signature"]) for detail in inputs + outputs]
        types = [detail["dtype"] for detail in inputs + outputs]
        if len(inputs) != 1 or len(outputs) != 1 or set(shapes) != {INPUT_SHAPE} or set(types) != {np.float32}:
            raise InvalidInputError(f"{self.path}: not an impasto stylization network (inputs and outputs "
                                    f"{shapes} {[t.__name__ for t in types]}; "
                                    f"expected one float32 {list(INPUT_SHAPE)} each)")
        self._input, self._output = inputs[0]["index"], outputs[0]["index"]
        self._allocated_shape = None
        self.tiling, self._stages = tiling, None
        if content is None and (tiling.tile_pixels == 0 or
                                (tiling.tile_pixels is not None and stages_path(path).is_file())):
            self._stages = LiteRTStages(stages_path(path), threads)

    def stylize(self, image: np.ndarray, strength: float = 1.0, preserve_color: bool = False) -> np.ndarray:
        """Stylizes one float32 [H, W, 3] image in [0, 255], with `FastStylizer`'s output options; the same shape."""
        from impasto.model.feedforward.litert_tiling import litert_tiled_stylize
        from impasto.model.feedforward.stylizer import apply_output_controls

        if self._stages is not None and self.tiling.applies_to(*image.shape[:2]):
            stylized = litert_tiled_stylize(self._stages, image, self.tiling.tile_size)[None]
        else:
            stylized = self.run(image)[None]
        return apply_output_controls(stylized, image[None], strength, preserve_color)[0].numpy()

    def run(self, image: np.ndarray) -> np.ndarray:
        """The network alone: float32 [H, W, 3] in [0, 255] -> the stylized image, the same shape and range."""
        batch = np.ascontiguousarray(image[None], dtype=np.float32)
        if batch.shape != self._allocated_shape:
            self._interpreter.resize_tensor_input(self._input, batch.shape, strict=False)
            self._interpreter.allocate_tensors()
            self._allocated_shape = batch.shape
        self._interpreter.set_tensor(self._input, batch)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)[0]
