"""`impasto export`: a trained model -> a TensorFlow Serving SavedModel version (plus the server's config
files), or LiteRT (TensorFlow Lite) files for phones and small devices.

    impasto export RUN_DIR_OR_BUNDLED_NAME --model-base MODELS_DIR --name NAME [--version N]
        [--target cpu|gpu] [--warmup-sizes 256x256,512x512] [--max-side 2048]
        [--tile-pixels N | --no-tile] [--tile-size 512] [--tflite-model]

writes MODELS_DIR/NAME/<version>/ atomically and rewrites MODELS_DIR/models.config,
batching_parameters.txt and monitoring.config. See docs/serving.md.

    impasto export RUN_DIR_OR_BUNDLED_NAME --format tflite --out DIR [--name NAME]
        [--variants float32,float16,int8,int8-full] [--calibration-photos PHOTO_DIR]

writes DIR/NAME-VARIANT.tflite and DIR/NAME-VARIANT.json for each variant that meets
its quality bound against the TensorFlow network (and DIR/NAME-VARIANT.tiles.tflite, its
stages for seam-free tiling of large images, but for int8-full). See docs/mobile.md.
"""

import argparse
import dataclasses
from pathlib import Path

from impasto.export import exporter, keys, litert, tfserving_config
from impasto.export.signatures import CPU_TARGET, TARGETS, ServingConfig
from impasto.export.tfserving_config import EXPORT_BATCHING, BatchingConfig
from impasto.export.warmup import DEFAULT_WARMUP_SIZES, parse_sizes
from impasto.model.cli_errors import EXIT_OK, reports_errors
from impasto.model.errors import InvalidInputError
from impasto.model.feedforward.bundles import load_network
from impasto.model.image_io import DEFAULT_MAX_PIXELS
from impasto.model.tile_grid import DEFAULT_TILE_PIXELS, DEFAULT_TILE_SIZE

DEFAULT_CALIBRATION_PHOTOS = Path(__file__).resolve().parents[1] / "data" / "samples" / "photos"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="impasto export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="bundled model name, training run directory or .npz bundle")
    parser.add_argument("--format", choices=("savedmodel", "tflite"), default="savedmodel",
                        help="savedmodel (TensorFlow Serving, the default) or tflite (LiteRT)")
    parser.add_argument("--model-base", help="savedmodel: folder of served models (MODELS_DIR); required")
    parser.add_argument("--name", help="model name: savedmodel: the folder under MODELS_DIR and the TF Serving name "
                                       "(required); tflite: the files' name (default: the style)")
    litert_flags = parser.add_argument_group("tflite (LiteRT)")
    litert_flags.add_argument("--out", help="folder to write the .tflite files and their .json side files to")
    litert_flags.add_argument("--variants", default=",".join(litert.VARIANTS),
                              help="comma-separated, from %(default)s (default: all)")
    litert_flags.add_argument("--calibration-photos", default=str(DEFAULT_CALIBRATION_PHOTOS),
                              help="photos to calibrate int8-full on and to check every variant against the "
                                   "TensorFlow network on (default: the sample photos, data/samples/photos)")
    parser.add_argument("--version", type=int, help="version number (default: one more than the highest)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--target", choices=TARGETS, default=CPU_TARGET,
                        help="cpu (default): no XLA, runs on any tensorflow_model_server; gpu: the network "
                             "XLA-compiled in serving_default (serve with --xla_gpu_compilation_enabled=true)")
    target.add_argument("--no-xla", dest="target", action="store_const", const=CPU_TARGET,
                        help="same as --target cpu")
    parser.add_argument("--tflite-model", action="store_true",
                        help="savedmodel, cpu target: also write model.tflite (the network's XNNPACK form, signature "
                             "stylize_tensor) into the version, for CPUs where LiteRT runs it fastest; servers "
                             "started with --prefer_tflite_model serve it (docs/serving.md)")
    parser.add_argument("--warmup-sizes", default=",".join(f"{h}x{w}" for h, w in DEFAULT_WARMUP_SIZES),
                        help="HEIGHTxWIDTH,... of the warmup requests the server replays at load "
                             "(default %(default)s; '' for none)")
    parser.add_argument("--max-side", type=int, default=2048,
                        help="largest bucket side; longer inputs are tiled (default 2048)")
    tiles = parser.add_mutually_exclusive_group()
    tiles.add_argument("--tile-pixels", type=int, default=DEFAULT_TILE_PIXELS,
                       help="inputs with more pixels are tiled, seam-free, at their own size (default %(default)s)")
    tiles.add_argument("--no-tile", action="store_true",
                       help="never tile: scale inputs longer than --max-side down to it and the result back up")
    parser.add_argument("--tile-size", type=int, default=DEFAULT_TILE_SIZE, help="tile side (default %(default)s)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="refuse images whose header claims more pixels (default %(default)s)")
    parser.add_argument("--serving-base-path",
                        help="where the server sees MODELS_DIR, for models.config (e.g. /models in the container); "
                             "default MODELS_DIR's absolute path")
    batching = parser.add_argument_group(
        "batching_parameters.txt", "Given any of these, the file is rewritten from them (defaults for the rest); "
        "given none, an existing file is kept and a missing one gets the defaults.")
    defaults = EXPORT_BATCHING
    for flag, default in (("--max-batch-size", defaults.max_batch_size),
                          ("--batch-timeout-micros", defaults.batch_timeout_micros),
                          ("--num-batch-threads", defaults.num_batch_threads),
                          ("--max-enqueued-batches", defaults.max_enqueued_batches)):
        batching.add_argument(flag, type=int, help=f"default {default}")
    batching.add_argument("--allowed-batch-sizes", help="e.g. 1,2,4,8 ending at --max-batch-size (default none)")
    return parser


def _batching_config(args) -> BatchingConfig | None:
    """The batching flags as a BatchingConfig, or None when none was given."""
    given = {name: getattr(args, name) for name in
             ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches")}
    given = {name: value for name, value in given.items() if value is not None}
    if args.allowed_batch_sizes is not None:
        try:
            sizes = args.allowed_batch_sizes.split(",")
            given["allowed_batch_sizes"] = tuple(int(size) for size in sizes if size.strip())
        except ValueError:
            raise InvalidInputError(
                f"--allowed-batch-sizes: {args.allowed_batch_sizes!r} is not a list of integers") from None
    return dataclasses.replace(EXPORT_BATCHING, **given) if given else None


@reports_errors
def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.format == "tflite":
        return _run_litert(args)
    if not args.model_base or not args.name:
        raise InvalidInputError("--format savedmodel needs --model-base and --name")
    # Every check that can refuse the input runs before anything is written.
    serving = ServingConfig(max_side=args.max_side, max_pixels=args.max_pixels, target=args.target,
                            tile_pixels=None if args.no_tile else args.tile_pixels, tile_size=args.tile_size)
    warmup_sizes = parse_sizes(args.warmup_sizes)
    batching = _batching_config(args)
    models_dir = Path(args.model_base)
    if models_dir.exists() and not models_dir.is_dir():
        raise InvalidInputError(f"--model-base {models_dir}: not a directory")
    model_dir = models_dir / exporter.check_model_name(args.name)
    if args.tflite_model and serving.target != CPU_TARGET:
        raise InvalidInputError("--tflite-model is for CPU servers: leave out --target gpu")
    if args.version is not None and (args.version < 1 or (model_dir / str(args.version)).exists()):
        raise InvalidInputError(f"--version {args.version}: must be a positive integer not already in {model_dir}")
    previous = tfserving_config.read_models_config(models_dir)
    network, metadata = load_network(args.model)
    version_dir = exporter.export_model(network, metadata, model_dir, version=args.version, config=serving,
                                        source=args.model, warmup_sizes=warmup_sizes,
                                        tflite_model=args.tflite_model)
    written = tfserving_config.write_server_files(models_dir, batching, args.serving_base_path, previous)
    sides = "/".join(str(side) for side in serving.bucket_sides)
    warmed = ",".join(f"{h}x{w}" for h, w in warmup_sizes) or "none"
    print(f"exported {args.model} as {args.name} version {version_dir.name} to {version_dir} "
          f"(target {serving.target}: {'XLA' if serving.jit_compile else 'no XLA'}; bucket sides {sides}; "
          f"warmup {warmed}{'; with ' + keys.TFLITE_MODEL_FILE if args.tflite_model else ''})")
    print("updated " + ", ".join(str(path) for path in written))
    return EXIT_OK


def _run_litert(args) -> int:
    if not args.out:
        raise InvalidInputError("--format tflite needs --out DIR")
    variants = [variant.strip() for variant in args.variants.split(",") if variant.strip()]
    unknown = sorted(set(variants).difference(litert.VARIANTS))
    if unknown or not variants:
        raise InvalidInputError(f"--variants {args.variants!r}: choose from {', '.join(litert.VARIANTS)}")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidInputError(f"--out {out_dir}: not a directory")
    calibration_images = litert.load_calibration_photos(args.calibration_photos)
    network, metadata = load_network(args.model)
    name = exporter.check_model_name(args.name or metadata.get("style") or Path(args.model).stem)
    litert.export_litert(network, metadata, out_dir, name, variants, calibration_images, source=args.model)
    return EXIT_OK
