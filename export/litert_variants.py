"""The LiteRT variants `impasto export --format tflite` writes, and the quality bound each must meet
(no TensorFlow here: `impasto export --help` lists them at once).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """One kind of exported file.

    Attributes:
        name: the file name's suffix and the ``--variants`` value.
        description: what it stores, for the side file.
        min_psnr: written only if its PSNR against the TensorFlow network reaches this (dB).
        max_mean_error: written only if its mean absolute difference from it is at most this (levels of 255).
    """

    name: str
    description: str
    min_psnr: float | None = None
    max_mean_error: float | None = None

    def meets_bound(self, check: dict) -> bool:
        if self.min_psnr is not None and check["psnr_db"] < self.min_psnr:
            return False
        return self.max_mean_error is None or check["mean_abs_error"] <= self.max_mean_error

    def bound(self) -> str:
        if self.min_psnr is not None:
            return f"PSNR >= {self.min_psnr:g} dB"
        return f"mean absolute error <= {self.max_mean_error:g} of 255"


VARIANTS = {variant.name: variant for variant in (
    Variant("float32", "float32 weights and arithmetic", max_mean_error=0.5),
    Variant("float16", "float16 weights, float32 arithmetic on CPU (float16 where a GPU delegate runs it)",
            min_psnr=45.0),
    Variant("int8", "int8 weights, float activations quantized dynamically (dynamic-range quantization)",
            min_psnr=35.0),
    Variant("int8-full", "int8 weights and activations, activation ranges calibrated on photos, each norm's "
            "input channels equalized on them first (full-integer quantization; float input and output)",
            min_psnr=30.0),
)}


TILING_VARIANTS = ("float32", "float16", "int8")
"""Variants written with a tiling-stages file beside them (``NAME-VARIANT.tiles.tflite``, `convert_tiling_stages`)
for seam-free tiled runs of large images; int8-full's calibrated ranges are the whole network's."""
