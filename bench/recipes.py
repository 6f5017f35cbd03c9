"""Which training recipe brings a feed-forward model down fastest? Variants trained side by side, then scored.

Each variant is an `impasto train` run with its own flags, all starting from the
same point (``--init-from``, a trained bundle, or random weights) and given the
same compute: ``--steps`` at 192 px and batch 4, with steps scaled so that
steps x batch x crop pixels is equal (a 256 px variant gets 0.5625x the steps).
A variant of another width (``--width``; the bundle is widened, see
`impasto.model.feedforward.widen`) gets equal wall time instead: its steps are
divided by ``--width-step-cost``, the time of one of its steps over one of the
reference's, measured on the machine beforehand; a bfloat16 variant (``--mixed-precision``) likewise,
by ``--bf16-step-cost``, the time of its step over a float32 one (below 1 on a CPU with
bfloat16 units, AVX-512 BF16 or AMX). Wall time is reported for
every variant, but on a shared machine it is the noisier measure.
Each trained network is then scored by the Gatys objective it was trained on
(its own loss settings, max pooling) on held-out photos, as bench/quality.py does.

Prints one JSON object on its last line: per variant, its flags, steps, wall
seconds, images per second and the objective on each photo and their mean.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (bench/common.py)
import quality  # noqa: E402  (bench/quality.py)

from impasto.model import image_io  # noqa: E402
from impasto.model.feedforward.bundles import load_network  # noqa: E402
from impasto.model.feedforward.stylizer import FastStylizer  # noqa: E402
from impasto.model.lossnet.vgg import VggFeatures  # noqa: E402

REFERENCE_PIXELS = 4 * 192 * 192
"""Pixels of one step of the reference recipe (batch 4 at 192 px): the unit of equal compute."""

VARIANTS = {
    "constant_1e-3": ["--lr", "1e-3", "--lr-schedule", "constant"],
    "cosine_1e-3": ["--lr", "1e-3", "--lr-schedule", "cosine", "--warmup-steps", "20"],
    "cosine_3e-3": ["--lr", "3e-3", "--lr-schedule", "cosine", "--warmup-steps", "50"],
    "cosine_1e-3_256px": ["--lr", "1e-3", "--lr-schedule", "cosine", "--warmup-steps", "20", "--image-size", "256"],
    "cosine_1e-3_batch8": ["--lr", "1e-3", "--lr-schedule", "cosine", "--warmup-steps", "20", "--batch-size", "8"],
    "cosine_1e-3_full_width": ["--lr", "1e-3", "--lr-schedule", "cosine", "--warmup-steps", "20", "--width", "1.0"],
    "cosine_1e-3_full_width_bf16": ["--lr", "1e-3", "--lr-schedule", "cosine", "--warmup-steps", "20", "--width", "1.0",
                                    "--mixed-precision"],
}
"""Named sets of `impasto train` flags, added to the shared ones (``--preset``, ``--init-from``)."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--style", default=str(common.REPO_ROOT / "data/samples/styles/starry_night.jpg"))
    parser.add_argument("--data", required=True, help="folder of training photos (held-out photos excluded)")
    parser.add_argument("--runs", required=True, help="folder for the variants' run directories (resumed if present)")
    parser.add_argument("--init-from", help="bundle every variant starts from (default: random weights)")
    parser.add_argument("--preset", default="cpu_small")
    parser.add_argument("--steps", type=int, default=300, help="steps of the reference recipe (batch 4, 192 px)")
    parser.add_argument("--checkpoint-every", type=int, default=50, help="so that a stopped sweep resumes")
    parser.add_argument("--width-step-cost", type=float, default=1.0,
                        help="seconds of a step of a --width variant over one of the reference (equal wall time)")
    parser.add_argument("--bf16-step-cost", type=float, default=1.0,
                        help="seconds of a --mixed-precision step over a float32 one (equal wall time)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {sorted(VARIANTS)}")
    parser.add_argument("--photos", default=str(common.REPO_ROOT / "data/heldout"), help="held-out photos")
    parser.add_argument("--size", type=int, default=256, help="long side of the held-out photos when scored")
    return parser.parse_args(argv)


def _flag(flags: list[str], name: str, default: int) -> int:
    return int(flags[flags.index(name) + 1]) if name in flags else default


def equal_compute_steps(flags: list[str], reference_steps: int, width_step_cost: float = 1.0,
                        bf16_step_cost: float = 1.0) -> int:
    """Steps that give a variant the pixels of `reference_steps` steps of batch 4 at 192 px, or for a
    variant of another width or in bfloat16, their wall time (`width_step_cost`, `bf16_step_cost`:
    the time of its step over the reference's, and of a bfloat16 step over a float32 one)."""
    pixels = _flag(flags, "--batch-size", 4) * _flag(flags, "--image-size", 192) ** 2
    cost = (width_step_cost if "--width" in flags else 1.0) * (bf16_step_cost if "--mixed-precision" in flags else 1.0)
    return max(1, round(reference_steps * REFERENCE_PIXELS / pixels / cost))


def train_variant(args, name: str) -> dict:
    """Runs (or resumes) one variant's `impasto train`; returns its summary line."""
    flags = VARIANTS[name]
    steps = equal_compute_steps(flags, args.steps, args.width_step_cost, args.bf16_step_cost)
    command = [sys.executable, "-m", "impasto", "train", "--style", args.style, "--data", args.data,
               "--out", str(Path(args.runs) / name), "--preset", args.preset, "--steps", str(steps),
               "--validation-photos", "0", "--checkpoint-every", str(args.checkpoint_every), "--no-progress", *flags]
    if args.init_from:
        command += ["--init-from", args.init_from]
    common.log(" ".join(command))
    started = time.perf_counter()
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    summary = json.loads(output.strip().splitlines()[-1])
    summary["process_seconds"] = round(time.perf_counter() - started, 1)
    # A resumed variant's time is spread over its processes: its history has each one's.
    own = [s for s in json.loads((Path(args.runs) / name / "model.json").read_text())["segments"] if "model" not in s]
    summary["training_seconds"] = round(sum(segment["wall_seconds"] for segment in own), 1)
    return summary


def score_variant(run_dir: Path, vgg, style_image, photos, size) -> dict:
    """The objective of the run's network on each held-out photo, and their mean."""
    network, metadata = load_network(run_dir)
    scores = {}
    for photo in photos:
        content = image_io.resize_long_side(image_io.load_image(photo), size)
        value = quality.objective_function(metadata, vgg, style_image, content)
        scores[photo.stem] = value(FastStylizer(network).stylize(content))
    return {"objective": scores, "mean_objective": sum(scores.values()) / len(scores)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    names = args.variants.split(",")
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
    trained = {name: train_variant(args, name) for name in names}
    vgg = VggFeatures(pooling="max")
    style_image = image_io.load_image(args.style)
    photos = quality.held_out_photos(args.photos)
    results = {}
    for name in names:
        results[name] = {"flags": " ".join(VARIANTS[name]), **trained[name],
                         **score_variant(Path(args.runs) / name, vgg, style_image, photos, args.size)}
        common.log(name, json.dumps(results[name]))
    figures = {"environment": common.environment(), "reference_steps": args.steps, "init_from": args.init_from,
               "best": min(results, key=lambda name: results[name]["mean_objective"]), "variants": results}
    common.print_json(figures)
    return figures


if __name__ == "__main__":
    main()
