"""`impasto export`: a trained model -> a TensorFlow Serving SavedModel version (plus the server's config
files), or LiteRT files; its flags and usage: `impasto.export.export_flags`."""

import dataclasses
from pathlib import Path

from impasto.export import exporter, keys, litert, tfserving_config
from impasto.export.export_flags import build_parser
from impasto.export.litert_variants import VARIANTS
from impasto.export.options import CPU_TARGET, parse_sizes
from impasto.export.signatures import ServingConfig
from impasto.export.tfserving_config import EXPORT_BATCHING, BatchingConfig
from impasto.model.cli_errors import EXIT_OK, reports_errors
from impasto.model.errors import InvalidInputError
from impasto.model.feedforward.bundles import load_network


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
    unknown = sorted(set(variants).difference(VARIANTS))
    if unknown or not variants:
        problem = f"unknown {', '.join(unknown)}" if unknown else "no variant named"
        raise InvalidInputError(f"--variants {args.variants!r}: {problem}; choose from {', '.join(VARIANTS)}")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidInputError(f"--out {out_dir}: not a directory")
    calibration_images = litert.load_calibration_photos(args.calibration_photos)
    network, metadata = load_network(args.model)
    name = exporter.check_model_name(args.name or metadata.get("style") or Path(args.model).stem)
    litert.export_litert(network, metadata, out_dir, name, variants, calibration_images, source=args.model)
    return EXIT_OK
