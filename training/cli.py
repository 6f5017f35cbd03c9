"""`impasto train`: train a feed-forward model for one style on a folder of photos (its flags:
`impasto.training.train_flags`)."""

import json
import signal
import sys
from dataclasses import replace
from pathlib import Path

import tensorflow as tf

from impasto.model import image_io
from impasto.model.cli_errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, reports_errors
from impasto.model.cpu import BFLOAT16_EXTENSIONS, CpuIdentity, this_cpu
from impasto.model.errors import InvalidInputError
from impasto.model.lossnet.weights import load_vgg_weights
from impasto.training import data, records
from impasto.training.config import TrainConfig, preset
from impasto.training.train_flags import build_parser
from impasto.training.trainer import Trainer, TrainingDiverged


def mixed_precision_hint(config: TrainConfig, cpu: CpuIdentity, has_gpu: bool) -> str | None:
    """What to tell a CPU-only run whose precision does not suit its CPU, else None.

    A float32 run on a CPU with bfloat16 units is told that `--mixed-precision` trains faster; a
    `--mixed-precision` run on a CPU without them is warned that it trains several times slower
    than float32 would.
    """
    if has_gpu or config.mixed_precision == bool(cpu.bfloat16_units):
        return None
    if config.mixed_precision:
        return (f"impasto: warning: this CPU has no bfloat16 units ({' or '.join(BFLOAT16_EXTENSIONS)}); "
                "--mixed-precision trains several times slower on it than float32 "
                "(docs/training.md, 'Mixed precision')")
    return (f"impasto: note: this CPU has bfloat16 units ({' and '.join(cpu.bfloat16_units)}); --mixed-precision "
            "trains faster on it (docs/training.md, 'Mixed precision')")


@reports_errors
def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    config = preset(args.preset, steps=args.steps, batch_size=args.batch_size, image_size=args.image_size,
                    style_size=args.style_size, width=args.width, residual_blocks=args.residual_blocks,
                    noise_channels=args.noise_channels, blur_fraction=args.blur_fraction,
                    max_short_side_scale=args.max_short_side_scale, crop_aspects=args.crop_aspects,
                    learning_rate=args.learning_rate,
                    validation_photos=args.validation_photos, mixed_precision=args.mixed_precision, seed=args.seed,
                    checkpoint_every=args.checkpoint_every, log_every=args.log_every,
                    validate_every=args.validate_every, max_pixels=args.max_pixels, lr_schedule=args.lr_schedule,
                    warmup_steps=args.warmup_steps, final_lr_fraction=args.final_lr_fraction)
    loss_overrides = {"content_weight": args.content_weight, "style_weight": args.style_weight,
                      "tv_weight": args.tv_weight}
    config = replace(config, loss=replace(config.loss, **{k: v for k, v in loss_overrides.items() if v is not None}))
    for name in ("steps", "batch_size", "image_size", "style_size", "checkpoint_every", "log_every", "validate_every",
                 "max_pixels", "residual_blocks"):
        if getattr(config, name) < 1:
            raise InvalidInputError(f"--{name.replace('_', '-')} must be at least 1")
    if config.noise_channels < 0:
        raise InvalidInputError("--noise-channels must be at least 0")
    if not 0.0 <= config.blur_fraction <= 1.0:
        raise InvalidInputError("--blur-fraction must be between 0 and 1")
    if not config.max_short_side_scale >= 1.0:
        raise InvalidInputError("--max-short-side-scale must be at least 1")
    if config.warmup_steps < 0 or not 0.0 <= config.final_lr_fraction <= 1.0:
        raise InvalidInputError("--warmup-steps must be at least 0 and --final-lr-fraction between 0 and 1")
    hint = mixed_precision_hint(config, this_cpu(), bool(tf.config.list_physical_devices("GPU")))
    if hint:
        print(hint, file=sys.stderr)
    style_image = image_io.load_image(args.style)
    if records.is_record_pattern(args.data):  # Shards are decoded and resized already; no photo is held out.
        photos, validation, record_files = [], [], records.shard_files(args.data)
    else:
        photos, validation = data.split_validation(data.list_photos(args.data), config.validation_photos)
        record_files = []
    trainer = Trainer(config, style_image, args.out, vgg_weights=load_vgg_weights(args.vgg_weights),
                      style_name=Path(args.style).stem, init_from=args.init_from)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = trainer.train(photos, validation, show_progress=not args.no_progress, record_files=record_files)
    except TrainingDiverged as error:
        print(f"impasto: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"interrupted: checkpoint saved in {trainer.manager.latest_checkpoint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    summary = {"run_dir": args.out, "steps": result.steps, "loss": result.losses.get("total"),
               "validation_loss": result.validation_loss, "images_per_second": round(result.images_per_second, 3),
               "wall_seconds": round(result.wall_seconds, 1), "skipped_files": result.skipped_files}
    print(json.dumps(summary))
    return EXIT_OK


def _interrupt(signal_number, frame) -> None:
    """SIGTERM (what a job scheduler or `kill` sends before it stops a job) ends training as Ctrl-C does."""
    raise KeyboardInterrupt
