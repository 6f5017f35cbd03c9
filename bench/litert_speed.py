"""Benchmark of the LiteRT export: file size, fidelity and speed of each variant against TensorFlow.

Converts one model (``--model``: bundled name, training run directory or .npz
bundle) in every ``--variants`` variant (`impasto.export.litert.convert`, int8-full
calibrated on ``--calibration-photos``), exports the same network as a SavedModel
without XLA (XLA is slower on CPU) and loads it in this process. At each ``--sizes``
side, on a square crop of ``--photo`` resized to that side, it measures

* ``psnr_db``, ``mean_abs_error``: each variant's output in LiteRT against the SavedModel's ``stylize_tensor``;
* ``ms``: the median wall time of one image, float32 [1, S, S, 3] in and out: LiteRT
  (XNNPACK, ``--threads`` threads, input tensor resized once beforehand) and the
  SavedModel's ``stylize_tensor`` signature, taking turns for ``--repeats`` rounds
  (`impasto.model.timing.time_in_turn`) so all see the same machine load; ``speedup`` is
  TensorFlow's time over the variant's.

and checks the issue's targets (``targets``): float16 file <= 1.5 MB, int8 <= 0.8 MB,
LiteRT float32 at least as fast as TensorFlow at every size, and the fastest variant
that meets its PSNR bound at least 1.5x faster. Progress goes to stderr; the figures
are one JSON object on the last line of stdout.

Example:
    .venv/bin/python bench/litert_speed.py --model great_wave --sizes 256,512
"""

import argparse
import functools
import statistics
import sys
import tempfile
from pathlib import Path

from impasto.model.tensorflow_import import import_tensorflow_quietly

import_tensorflow_quietly()  # First: the imports below load TensorFlow, whose start-up lines stay off stderr.
# This file's name would shadow the module `litert` that TensorFlow's and LiteRT's wrappers try to
# import: keep bench/ off the import path except while importing bench/common.py.
BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]

import ai_edge_litert.interpreter  # noqa: E402, F401
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(BENCH_DIR))
import common  # noqa: E402  (bench/common.py)

sys.path.remove(str(BENCH_DIR))

from impasto.export import keys, litert  # noqa: E402
from impasto.export.exporter import export_model  # noqa: E402
from impasto.export.litert_variants import VARIANTS  # noqa: E402
from impasto.export.signatures import ServingConfig  # noqa: E402
from impasto.model import image_io  # noqa: E402
from impasto.model.feedforward.bundles import load_network  # noqa: E402
from impasto.model.feedforward.litert_runtime import LiteRTStylizer  # noqa: E402
from impasto.model.files import atomic_write_bytes  # noqa: E402
from impasto.model.timing import time_in_turn  # noqa: E402

DEFAULT_PHOTO = common.REPO_ROOT / "tests" / "data" / "chelsea.png"
DEFAULT_CALIBRATION = common.REPO_ROOT / "data" / "samples" / "photos"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="great_wave", help="bundled model name, training run directory or .npz")
    parser.add_argument("--sizes", type=common.int_list, default=[256, 512], help="square sides, e.g. 256,512")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated (default: all)")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT (XNNPACK) threads")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per size, variant and TensorFlow")
    parser.add_argument("--photo", default=str(DEFAULT_PHOTO), help="the image, cropped square and resized")
    parser.add_argument("--calibration-photos", default=str(DEFAULT_CALIBRATION), help="int8-full's calibration set")
    return parser


def square_photo(path: str, side: int) -> np.ndarray:
    """The centre square of the photo, resized to `side`: float32 [side, side, 3] in [0, 255]."""
    photo = image_io.load_image(path)
    height, width = photo.shape[:2]
    crop = min(height, width)
    top, left = (height - crop) // 2, (width - crop) // 2
    return image_io.resize_image(photo[top:top + crop, left:left + crop], side, side)


def run(args, work_dir: Path) -> dict:
    variants = [variant for variant in args.variants.split(",") if variant]
    network, metadata = load_network(args.model)
    calibration = litert.load_calibration_photos(args.calibration_photos)
    stylizers, sizes_bytes = {}, {}
    for variant in variants:
        common.log(f"converting {variant} ...")
        model = litert.convert(network, variant, calibration)
        path = work_dir / f"{variant}.tflite"
        atomic_write_bytes(path, model)
        stylizers[variant], sizes_bytes[variant] = LiteRTStylizer(path, threads=args.threads), len(model)
    common.log("exporting the SavedModel (no XLA) ...")
    version_dir = export_model(network, metadata, work_dir / "savedmodel", config=ServingConfig(target="cpu"),
                               source=args.model)
    stylize_tensor = tf.saved_model.load(str(version_dir)).signatures[keys.STYLIZE_TENSOR]

    def tensorflow(image: np.ndarray) -> np.ndarray:
        return stylize_tensor(**{keys.IMAGES: tf.constant(image[None])})[keys.STYLIZED_IMAGES][0].numpy()

    by_size = {}
    for side in args.sizes:
        image = square_photo(args.photo, side)
        expected = tensorflow(image)  # Also warms TensorFlow up at this size.
        figures = {}
        for variant, stylizer in stylizers.items():  # Also sizes each interpreter.
            stylized = np.clip(stylizer.run(image), 0, 255)
            figures[variant] = {"psnr_db": litert.psnr(stylized, expected),
                                "mean_abs_error": float(np.mean(np.abs(stylized - expected)))}
        common.log(f"{side} px: timing {args.repeats} rounds ...")
        calls = {variant: functools.partial(stylizer.run, image) for variant, stylizer in stylizers.items()}
        samples = time_in_turn({**calls, "tensorflow": functools.partial(tensorflow, image)}, args.repeats)
        tensorflow_ms = 1000 * statistics.median(samples["tensorflow"])
        for variant in variants:
            figures[variant]["ms"] = 1000 * statistics.median(samples[variant])
            figures[variant]["speedup"] = tensorflow_ms / figures[variant]["ms"]
        by_size[str(side)] = {"tensorflow_ms": tensorflow_ms, "variants": figures}
    return {
        "benchmark": "litert",
        "model": args.model,
        "width": metadata["width"],
        "threads": args.threads,
        "repeats": args.repeats,
        "bytes": sizes_bytes,
        "sizes": by_size,
        "targets": targets(sizes_bytes, by_size),
        "environment": {**common.environment(), "ai_edge_litert": _litert_version()},
    }


def targets(sizes_bytes: dict, by_size: dict) -> dict:
    """The issue's targets, each with the figure it judges."""
    met = {}
    if "float16" in sizes_bytes:
        met["float16_at_most_1.5_MB"] = sizes_bytes["float16"] <= 1.5e6
    if "int8" in sizes_bytes:
        met["int8_at_most_0.8_MB"] = sizes_bytes["int8"] <= 0.8e6
    for side, figures in by_size.items():
        variants = figures["variants"]
        if "float32" in variants:
            met[f"float32_at_least_as_fast_as_tensorflow_{side}"] = variants["float32"]["speedup"] >= 1.0
        within = [name for name, figure in variants.items() if VARIANTS[name].meets_bound(figure)]
        if within:
            fastest = max(within, key=lambda name: variants[name]["speedup"])
            met[f"fastest_within_bound_{side}"] = fastest
            met[f"fastest_within_bound_at_least_1.5x_{side}"] = variants[fastest]["speedup"] >= 1.5
    return met


def _litert_version() -> str:
    from importlib.metadata import version

    return version("ai-edge-litert")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="impasto-bench-litert-") as work_dir:
        figures = run(args, Path(work_dir))
    common.print_json(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
