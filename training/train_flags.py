"""`impasto train`: train a feed-forward model for one style on a folder of photos.

Only the flags live here, with nothing that imports TensorFlow, so that `impasto train --help` and flag
errors answer at once; `impasto.training.cli` runs the command.
"""

import argparse

from impasto.training.config import PRESETS, TrainConfig
from impasto.training.schedule import SCHEDULES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="impasto train", description=__doc__.splitlines()[0])
    parser.add_argument("--style", required=True, help="the style painting (image file)")
    parser.add_argument("--data", required=True, help="folder of training photos, read recursively (jpg/png/webp), "
                                                      "or TFRecord shards of impasto prepare-data: 'PREFIX-*.tfrecord'")
    parser.add_argument("--out", required=True, help="run directory: checkpoints, logs, model.json; resumes if present")
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="base settings (default: paper)")
    parser.add_argument("--steps", type=int, help="total training steps")
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--image-size", type=int, help="training crop size in pixels")
    parser.add_argument("--style-size", type=int, help="long side of the style image for its Gram matrices")
    parser.add_argument("--width", type=float, help="network width multiplier (1.0 = the paper's network)")
    parser.add_argument("--residual-blocks", type=int, help="the network's residual blocks (default 5, the paper's); "
                                                             "with --init-from a shallower bundle, the blocks added "
                                                             "start near the identity")
    parser.add_argument("--noise-channels", type=int, help="channels of fixed noise the network reads beside the "
                                                            "photo (default 0, the paper's network); with "
                                                            "--init-from, the channels added start at zero weight")
    parser.add_argument("--blur-fraction", type=float, help="share of training crops blurred with a random Gaussian "
                                                             "(default 0, the paper's crops)")
    parser.add_argument("--max-short-side-scale", type=float,
                        help="before its crop, a photo is resized to just cover the crop (a square: its short side "
                             "to the crop size) times a factor drawn from 1 to this (default "
                             f"{TrainConfig.max_short_side_scale}); larger: crops show objects at more scales")
    parser.add_argument("--crop-aspects", type=_aspects, metavar="W:H,...",
                        help="shapes of the training crops, each with the crop size's pixels, taken by batches in "
                             "turn: '1,16:9' = square, then 16:9 (default "
                             f"{','.join(f'{aspect:g}' for aspect in TrainConfig.crop_aspects)}: square)")
    parser.add_argument("--lr", type=float, dest="learning_rate", help="Adam's peak learning rate")
    parser.add_argument("--lr-schedule", choices=SCHEDULES, help="after the warm-up: constant, or cosine decay")
    parser.add_argument("--warmup-steps", type=int, help="steps of linear learning-rate warm-up")
    parser.add_argument("--final-lr-fraction", type=float, help="cosine: final learning rate as a fraction of the peak")
    parser.add_argument("--init-from", help="start a new run from this model's weights (bundled name or .npz bundle); "
                                            "its history is kept in the new bundle's JSON; a bundle of a whole "
                                            "fraction of --width is widened first, computing the same function")
    parser.add_argument("--content-weight", type=float)
    parser.add_argument("--style-weight", type=float)
    parser.add_argument("--tv-weight", type=float)
    parser.add_argument("--validation-photos", type=int, help="photos held out for the validation loss and images")
    parser.add_argument("--max-pixels", type=int, help="skip (and count) photos whose header claims more pixels, "
                                                       f"before decoding them (default {TrainConfig.max_pixels})")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    parser.add_argument("--log-every", type=int, help="steps between TensorBoard scalar writes")
    parser.add_argument("--validate-every", type=int, help="steps between validation passes")
    parser.add_argument("--mixed-precision", action="store_true", default=None,
                        help="bfloat16 compute, float32 variables: for GPUs, TPUs and CPUs with bfloat16 units "
                             "(AVX-512 BF16, AMX)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--vgg-weights", help="loss-network weights: imagenet, torchvision, or a .h5/.npz file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _aspects(text: str) -> tuple[float, ...]:
    """'1,16:9,9:16' -> (1.0, 1.777..., 0.5625): crop shapes as width / height, each positive."""
    aspects = []
    for item in text.split(","):
        width, colon, height = item.strip().partition(":")
        try:
            aspect = float(width) / (float(height) if colon else 1.0)
        except (ValueError, ZeroDivisionError):
            raise argparse.ArgumentTypeError(f"{item.strip()!r} is not an aspect: give W:H or a number, "
                                             "e.g. '1,16:9'") from None
        if not 0.0 < aspect < float("inf"):
            raise argparse.ArgumentTypeError(f"aspect {item.strip()!r} must be positive and finite")
        aspects.append(aspect)
    return tuple(aspects)
