"""How good are the feed-forward models? Their output scored by the Gatys objective they were trained on.

For each model and each photo it never trained on: the objective (the model's own
loss layers and weights, its style image at its training style size, max pooling)
of the content photo, of the feed-forward output, and of L-BFGS started from the
content photo after 50, 100 and 300 iterations. Target: feed-forward <= L-BFGS-50.

Prints one JSON object on its last line.
"""

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import tensorflow as tf

from impasto.model import image_io
from impasto.model.fast import FastStylizer
from impasto.model.gatys import GatysConfig, GatysStylizer, blended_style_grams, make_objective
from impasto.model.library import bundled_model_names, load_network
from impasto.model.losses import LossConfig
from impasto.model.optimizers import OptimizerConfig
from impasto.model.vgg import VggFeatures

REPO_ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", default=str(REPO_ROOT / "data/samples/photos"), help="held-out photos")
    parser.add_argument("--styles", default=str(REPO_ROOT / "data/samples/styles"), help="the models' style images")
    parser.add_argument("--models", help="comma-separated model names or run dirs (default: every bundled model)")
    parser.add_argument("--sizes", default="256", help="content long sides, e.g. 256")
    parser.add_argument("--large-size", type=int, default=512, help="extra size for the first model (0 = off)")
    parser.add_argument("--iterations", default="50,100,300", help="L-BFGS checkpoints")
    parser.add_argument("--max-photos", type=int, default=2, help="photos per model and size")
    return parser.parse_args(argv)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _loss_config(metadata: dict) -> LossConfig:
    loss = metadata["train_config"]["loss"]
    return LossConfig(content_layers=tuple(map(tuple, loss["content_layers"])),
                      style_layers=tuple(map(tuple, loss["style_layers"])), content_weight=loss["content_weight"],
                      style_weight=loss["style_weight"], tv_weight=loss["tv_weight"])


def score_photo(network, metadata, vgg, style_image, photo, size, checkpoints) -> dict:
    """Objective values for one photo: content, feed-forward and L-BFGS after each checkpoint."""
    loss_config = _loss_config(metadata)
    style_size = metadata["train_config"]["style_size"]
    content = image_io.resize_long_side(photo, size)
    config = replace(GatysConfig(), size=size, iterations=max(checkpoints), loss=loss_config, pooling="max",
                     style_scale=style_size / size, report_every=min(checkpoints),
                     optimizer=OptimizerConfig(tolerance=0.0))
    style = image_io.resize_long_side(style_image, style_size)
    grams = blended_style_grams(vgg, [style], [1.0], [layer for layer, _ in loss_config.style_layers])
    targets = vgg(tf.constant(content[None]), [layer for layer, _ in loss_config.content_layers])
    objective, _ = make_objective(vgg, content.shape, targets, grams, loss_config)

    def value(image: np.ndarray) -> float:
        return float(objective(tf.constant(image.reshape(-1)))[0])

    stylized = FastStylizer(network).stylize(content)
    scores = {"content_photo": value(content), "feed_forward": value(stylized)}
    reports = {}
    started = time.perf_counter()
    GatysStylizer(config, vgg).stylize(content, [style_image],
                                       on_progress=lambda p: reports.setdefault(p.iteration, p.value))
    for iterations in checkpoints:
        scores[f"lbfgs_{iterations}"] = reports.get(iterations)
    scores["lbfgs_seconds"] = round(time.perf_counter() - started, 1)
    scores["feed_forward_at_or_below_lbfgs_50"] = scores["feed_forward"] <= scores[f"lbfgs_{min(checkpoints)}"]
    return scores


def main(argv=None) -> dict:
    args = parse_args(argv)
    names = args.models.split(",") if args.models else bundled_model_names()
    photos = sorted(p for p in Path(args.photos).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    photos = photos[: args.max_photos]
    sizes = [int(s) for s in args.sizes.split(",")]
    checkpoints = sorted(int(i) for i in args.iterations.split(","))
    vgg = VggFeatures(pooling="max")
    results = {}
    for index, name in enumerate(names):
        network, metadata = load_network(name)
        style_image = image_io.load_image(Path(args.styles) / f"{metadata['style']}.jpg")
        model_sizes = sizes + ([args.large_size] if index == 0 and args.large_size else [])
        for size in model_sizes:
            for photo_path in photos:
                _log(f"{name} {size}px {photo_path.name}")
                key = f"{name}/{size}/{photo_path.stem}"
                results[key] = score_photo(network, metadata, vgg, style_image, image_io.load_image(photo_path), size,
                                           checkpoints)
                _log(json.dumps(results[key]))
    all_below = all(r["feed_forward_at_or_below_lbfgs_50"] for r in results.values())
    summary = {"all_feed_forward_at_or_below_lbfgs_50": all_below, "results": results}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
