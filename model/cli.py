"""`impasto stylize`: optimization-based (Gatys) or feed-forward (Johnson) stylization of one image
(its flags: `impasto.model.stylize_flags`)."""

import sys
import time
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from impasto.model import image_io
from impasto.model.cli_errors import EXIT_OK, reports_errors
from impasto.model.errors import InvalidInputError
from impasto.model.feedforward import engines
from impasto.model.feedforward.bundles import bundled_model_names, load_network
from impasto.model.lossnet.vgg import VggFeatures
from impasto.model.lossnet.weights import load_vgg_weights
from impasto.model.optimize.gatys import GatysConfig, GatysStylizer, Progress
from impasto.model.optimize.optimizers import OptimizerConfig
from impasto.model.optimize.tiled_objective import check_tile_size
from impasto.model.stylize_flags import build_parser
from impasto.model.tiling import DEFAULT_TILE_PIXELS, DEFAULT_TILE_SIZE, GATYS_TILE_PIXELS, Tiling


def parse_layers(text: str, flag: str) -> tuple[tuple[str, float], ...]:
    """``"block1_conv1,block2_conv1:0.5"`` -> ``(("block1_conv1", 1.0), ("block2_conv1", 0.5))``."""
    layers = []
    for item in text.split(","):
        name, _, weight = item.strip().partition(":")
        try:
            layers.append((name, float(weight) if weight else 1.0))
        except ValueError:
            raise InvalidInputError(f"{flag}: {item!r} is not LAYER or LAYER:WEIGHT") from None
    return tuple(layers)


@reports_errors
def run(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_models:
        print("\n".join(bundled_model_names()))
        return EXIT_OK
    if not args.content or not args.out:
        parser.print_usage()
        raise InvalidInputError("CONTENT and --out are required")
    image_io.output_format(args.out)  # Refuse a bad output name before any work.
    if args.max_pixels < 1:
        raise InvalidInputError(f"--max-pixels must be positive, not {args.max_pixels}")
    method = args.method or ("fast" if args.model else "optimize")
    content_image = image_io.load_image(args.content, args.max_pixels)
    started = time.perf_counter()
    result = _run_fast(args, content_image) if method == "fast" else _run_optimize(args, content_image)
    image_io.save_image(result, args.out)
    if not args.no_progress:
        print(f"wrote {args.out} ({result.shape[1]}x{result.shape[0]}) in {time.perf_counter() - started:.1f} s")
    return EXIT_OK


def _run_fast(args, content_image):
    from impasto.model.feedforward.stylizer import FastStylizer

    if not args.model:
        raise InvalidInputError("--method fast needs --model (see --list-models)")
    if not 0.0 <= args.strength <= 1.0:
        raise InvalidInputError(f"--strength must be between 0 and 1, not {args.strength}")
    if args.size:
        content_image = image_io.resize_long_side(content_image, args.size)
    engines.check_engine(args.engine)
    if Path(args.model).suffix == ".tflite":
        from impasto.model.feedforward.litert_runtime import LiteRTStylizer

        stylizer = LiteRTStylizer(args.model, tiling=_tiling(args, DEFAULT_TILE_PIXELS))
    else:
        network, _ = load_network(args.model)
        report = None if args.no_progress else (lambda line: print(line, file=sys.stderr))
        stylizer = FastStylizer(network, engine=args.engine, tiling=_tiling(args, DEFAULT_TILE_PIXELS), report=report)
    return stylizer.stylize(content_image, strength=args.strength, preserve_color=args.preserve_color)


def _tiling(args, default_pixels: int) -> Tiling:
    """The --tile / --no-tile / --tile-pixels choice."""
    if args.no_tile:
        return Tiling.never()
    if args.tile is not None:
        return Tiling.always(args.tile)
    return Tiling(tile_pixels=default_pixels if args.tile_pixels is None else args.tile_pixels,
                  tile_size=DEFAULT_TILE_SIZE)


def _gatys_config(args) -> GatysConfig:
    config = GatysConfig()
    loss = config.loss
    if args.content_layers:
        loss = replace(loss, content_layers=parse_layers(args.content_layers, "--content-layers"))
    if args.style_layers:
        loss = replace(loss, style_layers=parse_layers(args.style_layers, "--style-layers"))
    weights = {"content_weight": args.content_weight, "style_weight": args.style_weight, "tv_weight": args.tv_weight}
    loss = replace(loss, **{name: value for name, value in weights.items() if value is not None})
    optimizer = OptimizerConfig(method=args.optimizer, learning_rate=args.lr, tolerance=args.tolerance)
    return replace(config, size=args.size or config.size, iterations=args.iterations, scales=args.scales, loss=loss,
                   optimizer=optimizer, pooling=args.pooling, init=args.init, style_scale=args.style_scale,
                   preserve_color=args.preserve_color, seed=args.seed, tiling=_tiling(args, GATYS_TILE_PIXELS),
                   report_every=min(config.report_every, args.save_every or config.report_every))


def _run_optimize(args, content_image):
    if not args.style:
        raise InvalidInputError("--method optimize needs at least one --style image")
    if args.size is not None and args.size < 16:
        raise InvalidInputError(f"--size must be at least 16, not {args.size}")
    if args.iterations < 1:
        raise InvalidInputError("--iterations must be at least 1")
    style_images = [image_io.load_image(path, args.max_pixels) for path in args.style]
    blend_weights = None
    if args.style_weights:
        try:
            blend_weights = [float(w) for w in args.style_weights.split(",")]
        except ValueError:
            raise InvalidInputError(
                f"--style-weights: {args.style_weights!r} is not a comma-separated list of numbers") from None
        if len(blend_weights) != len(style_images) or min(blend_weights) < 0 or sum(blend_weights) <= 0:
            raise InvalidInputError("--style-weights needs one non-negative weight per --style, not all zero")
    init_image = None
    if args.init not in ("content", "noise"):
        init_image = image_io.load_image(args.init, args.max_pixels)
    config = _gatys_config(args)
    check_tile_size(config.tiling.tile_size)
    vgg_layers = VggFeatures(load_vgg_weights(args.vgg_weights), pooling=config.pooling)
    unknown = set(config.loss.all_layers).difference(vgg_layers.layer_names)
    if unknown:
        raise InvalidInputError(
            f"unknown VGG layers {sorted(unknown)}; this network has {list(vgg_layers.layer_names)}")
    stylizer = GatysStylizer(config, vgg_layers)
    report = _ProgressReport(args, config)
    try:
        return stylizer.stylize(content_image, style_images, blend_weights, init_image, on_progress=report)
    finally:
        report.close()


class _ProgressReport:
    """Progress bar, snapshots every N iterations and TensorBoard logging, all optional."""

    def __init__(self, args, config: GatysConfig):
        stages = len(config.stage_sizes())
        self.bar = tqdm(total=config.iterations * stages, disable=args.no_progress, unit="it", dynamic_ncols=True)
        self.out, self.save_every, self.last_saved = Path(args.out), args.save_every, 0
        self.writer = None
        if args.logdir:
            import tensorflow as tf

            self.writer = tf.summary.create_file_writer(args.logdir)
        self.position = 0

    def __call__(self, progress: Progress) -> None:
        position = progress.stage * progress.iterations + progress.iteration
        self.bar.update(position - self.position)
        self.position = position
        self.bar.set_postfix({name: f"{value:.4g}" for name, value in progress.terms.items() if "/" not in name})
        if self.save_every and progress.iteration // self.save_every > self.last_saved // self.save_every:
            snapshot = self.out.with_name(f"{self.out.stem}_{position:05d}{self.out.suffix}")
            image_io.save_image(progress.image(), snapshot)
        self.last_saved = progress.iteration
        if self.writer:
            import tensorflow as tf

            with self.writer.as_default(step=position):
                for name, value in progress.terms.items():
                    tf.summary.scalar(f"loss/{name}", value)
                tf.summary.scalar("loss/total", progress.value)
                tf.summary.image("image", tf.cast(progress.image()[None], tf.uint8))

    def close(self) -> None:
        self.bar.close()
        if self.writer:
            self.writer.flush()
