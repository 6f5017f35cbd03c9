"""Benchmark of `impasto export`: export time, SavedModel size, and latency through the loaded SavedModel.

It exports one model (``--model``: bundled name, training run directory or .npz
bundle; or a randomly initialised network of ``--random-width``) with XLA into a
temporary models directory, loads the version with `tf.saved_model.load`, and at
each ``--sizes`` side (a square photo of that many pixels, PNG) times one image
through ``serving_default`` (XLA-compiled network) and ``serving_noxla``:

* ``first_ms``: the first call at that size (tracing, and for XLA the compile of
  that bucket's program);
* ``warm_ms``: the median of ``--repeats`` further calls.

A size that is not a bucket side is padded up to the next one, so it pays that
bucket's compute. Progress goes to stderr; the figures are one JSON object on the
last line of stdout.

Example:
    .venv/bin/python bench/export.py --model runs/starry_night --sizes 256,512,1024
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from impasto.model.tensorflow_import import import_tensorflow_quietly

import_tensorflow_quietly()  # First: the imports below load TensorFlow, whose start-up lines stay off stderr.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (bench/common.py)
import tensorflow as tf  # noqa: E402

from impasto.export import keys  # noqa: E402
from impasto.export.exporter import export_model  # noqa: E402
from impasto.export.options import DEFAULT_WARMUP_SIZES  # noqa: E402
from impasto.export.signatures import ServingConfig  # noqa: E402
from impasto.export.warmup import warmup_path  # noqa: E402
from impasto.model import image_io  # noqa: E402
from impasto.model.feedforward.bundles import load_network  # noqa: E402
from impasto.model.feedforward.transformer import TransformerNet  # noqa: E402

DEFAULT_PHOTO = common.REPO_ROOT / "tests" / "data" / "chelsea.png"
SIGNATURES = {"xla": keys.SERVING_DEFAULT, "noxla": keys.SERVING_NOXLA}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="bundled model name, training run directory or .npz bundle")
    source.add_argument("--random-width", type=float, help="export a randomly initialised network of this width")
    parser.add_argument("--sizes", type=common.int_list, default=[256, 512, 1024], help="square sides, e.g. 256,512")
    parser.add_argument("--repeats", type=int, default=3, help="warm calls per size and signature")
    parser.add_argument("--max-side", type=int, default=2048, help="the export's --max-side")
    parser.add_argument("--photo", default=str(DEFAULT_PHOTO), help="the image, resized to each size")
    parser.add_argument("--models-dir", help="where to export (default: a temporary directory, removed after)")
    return parser


def directory_bytes(path: Path) -> int:
    """Total size of the files below `path`."""
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def latency(signature, image_bytes: bytes, repeats: int) -> dict:
    """First-call and warm (median of `repeats`) milliseconds for one image through `signature`."""
    batch = {keys.IMAGE_BYTES: tf.constant([image_bytes])}

    def call() -> None:
        signature(**batch)[keys.STYLIZED_IMAGE_BYTES].numpy()

    first = common.time_call(call)
    warm = common.summarize(common.time_call(call) for _ in range(repeats))
    return {"first_ms": 1000 * first, "warm_ms": 1000 * warm["median"], "warm_best_ms": 1000 * warm["best"]}


def run(args, models_dir: Path) -> dict:
    if args.model:
        network, metadata = load_network(args.model)
    else:
        network, metadata = TransformerNet(width=args.random_width), {"width": args.random_width, "style": "random"}
    config = ServingConfig(max_side=args.max_side, target="gpu")  # serving_default XLA beside serving_noxla.
    common.log(f"exporting (width {metadata['width']}, bucket sides {config.bucket_sides}) ...")
    started = time.perf_counter()
    version_dir = export_model(network, metadata, models_dir / "bench", config=config, source=args.model or "random")
    export_seconds = time.perf_counter() - started
    started = time.perf_counter()
    loaded = tf.saved_model.load(str(version_dir))
    load_seconds = time.perf_counter() - started
    photo = image_io.load_image(args.photo)
    latencies = {}
    for size in args.sizes:
        image_bytes = image_io.encode_image(image_io.resize_image(photo, size, size))
        latencies[str(size)] = {}
        for label, name in SIGNATURES.items():
            common.log(f"{size} px, {name} ...")
            latencies[str(size)][label] = latency(loaded.signatures[name], image_bytes, args.repeats)
    return {
        "benchmark": "export",
        "model": args.model or f"random width {args.random_width}",
        "width": metadata["width"],
        "parameters": int(sum(v.shape.num_elements() for v in network.trainable_variables)),
        "export_seconds": export_seconds,
        "saved_model_bytes": directory_bytes(version_dir),
        "saved_model_pb_bytes": (version_dir / "saved_model.pb").stat().st_size,
        "variables_bytes": directory_bytes(version_dir / "variables"),
        "warmup_bytes": warmup_path(version_dir).stat().st_size,
        "warmup_records": len(DEFAULT_WARMUP_SIZES),
        "load_seconds": load_seconds,
        "repeats": args.repeats,
        "latency_per_image": latencies,
        "environment": common.environment(),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.models_dir:
        figures = run(args, Path(args.models_dir))
    else:
        with tempfile.TemporaryDirectory(prefix="impasto-bench-export-") as models_dir:
            figures = run(args, Path(models_dir))
    common.print_json(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
