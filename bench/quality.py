"""How good are the feed-forward models? Their output scored by the Gatys objective they were trained on.

For each model and each photo it never trained on: the objective (the model's own
loss layers and weights, its style image at its training style size, max pooling)
of the content photo, of the feed-forward output, and of L-BFGS after 50, 100 and
300 iterations started from seeded white noise (Johnson et al.'s baseline, Fig. 5),
and after 50 started from the content photo (a stronger one). Target: feed-forward <= noise-started
L-BFGS-50; stretch: <= noise-started L-BFGS-100.

The noise and content baselines run L-BFGS unconstrained, as the papers did
(`GatysConfig.bounded` False), and each figure is the objective of the optimizer's
iterate, which from white noise leaves [0, 255] (docs/training.md, "Where the
bundled models stand"). Beside it, ``..._image`` is the objective of the image that
method delivers, the iterate clipped to [0, 255], the range the feed-forward output
lies in; its ratios end in ``_image``. With
``--starts noise,content,noise_bounded``, scipy's L-BFGS-B from the same noise, held
to [0, 255] throughout, is scored too: what a box-constrained optimizer delivers;
with ``noise_projected``, impasto's own L-BFGS held to [0, 255] (`GatysConfig.bounded`,
what ``impasto stylize --method optimize`` runs), from the same noise; with
``content_projected``, the same from the content photo (the command's default start).

The feed-forward output and impasto's L-BFGS iterates (not scipy's) are reported term by term too
(``feed_forward_terms``, ``noise_lbfgs_50_terms`` and the ratios ``feed_forward_over_noise_50_terms``):
content, style and total variation, and each layer's share, to show where a network falls short of the
optimizer.

Fifty iterations from white noise end in a different place for each noise (and, through the order
of floating-point sums, on each CPU): ``--seeds 0,1,2,3`` runs every start from noise from each seed and
reports the mean beside the first seed's figure, and the feed-forward objective over that mean
(docs/training.md, "How far the baseline moves").

The L-BFGS runs depend only on the style, the loss settings, the photo and the
size, not on the network, so ``--baseline-cache FILE`` keeps them in a JSON file
and later runs (another checkpoint of the same style) reuse them.

Prints one JSON object on its last line.
"""

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from impasto.model.tensorflow_import import import_tensorflow_quietly

import_tensorflow_quietly()  # First: the imports below load TensorFlow, whose start-up lines stay off stderr.

import numpy as np  # noqa: E402
import scipy.optimize  # noqa: E402
import tensorflow as tf  # noqa: E402

from impasto.model import image_io  # noqa: E402
from impasto.model.feedforward.bundles import bundled_model_names, load_network  # noqa: E402
from impasto.model.feedforward.stylizer import FastStylizer  # noqa: E402
from impasto.model.files import atomic_write_bytes  # noqa: E402
from impasto.model.lossnet.loss_config import LossConfig  # noqa: E402
from impasto.model.lossnet.vgg import VggFeatures  # noqa: E402
from impasto.model.optimize.gatys import GatysConfig, GatysStylizer, blended_style_grams, make_objective, white_noise  # noqa: E402
from impasto.model.optimize.optimizers import OptimizerConfig  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", default=str(REPO_ROOT / "data/heldout"),
                        help="held-out photos: no model trained on them (default: data/heldout)")
    parser.add_argument("--styles", default=str(REPO_ROOT / "data/samples/styles"), help="the models' style images")
    parser.add_argument("--models", help="comma-separated model names or run dirs (default: every bundled model)")
    parser.add_argument("--sizes", default="256", help="content long sides, e.g. 256")
    parser.add_argument("--large-size", type=int, default=512, help="extra size for the first model (0 = off)")
    parser.add_argument("--iterations", default="50,100,300", help="L-BFGS checkpoints from noise")
    parser.add_argument("--content-iterations", default="50", help="L-BFGS checkpoints from the content photo")
    parser.add_argument("--bounded-iterations", default="50,100",
                        help="checkpoints of the runs from noise held to [0, 255] (starts noise_bounded, "
                             "noise_projected)")
    parser.add_argument("--max-photos", type=int, default=2, help="photos per model and size")
    parser.add_argument("--starts", default="noise,content",
                        help="comma-separated baselines: noise, content, noise_bounded (scipy's L-BFGS-B), "
                             "noise_projected, content_projected (impasto's L-BFGS held to [0, 255])")
    parser.add_argument("--seeds", "--seed", default="0",
                        help="comma-separated seeds of the white-noise starts; with more than one, each noise "
                             "baseline is also given from each seed, with their mean and the ratio to it")
    parser.add_argument("--baseline-cache", default=str(REPO_ROOT / "bench/quality_baselines.json"),
                        help="JSON file that keeps L-BFGS results between runs (default: the committed one, "
                             "which holds every bundled style on the first 2 held-out photos at 256 px)")
    return parser.parse_args(argv)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _loss_config(metadata: dict) -> LossConfig:
    loss = metadata["train_config"]["loss"]
    return LossConfig(content_layers=tuple(map(tuple, loss["content_layers"])),
                      style_layers=tuple(map(tuple, loss["style_layers"])), content_weight=loss["content_weight"],
                      style_weight=loss["style_weight"], tv_weight=loss["tv_weight"])


def lbfgs_baseline(vgg, loss_config, style_image, style_size, content, checkpoints, start, seed,
                   image_objective) -> dict:
    """The objective of impasto's L-BFGS from `start` after each number of iterations.

    ``{start}_lbfgs_{n}`` is the objective of the iterate, ``{start}_lbfgs_{n}_image`` that of the
    image delivered at that point (the iterate clipped to [0, 255]), computed by `image_objective`, and
    ``{start}_lbfgs_{n}_terms`` the iterate's terms (``LossConfig.term_names``: subtotals, then layers).

    Args:
        start: "noise" or "content", unconstrained as in the papers, or either with "_projected", held to
            [0, 255].
    """
    config = replace(GatysConfig(), size=max(content.shape[:2]), iterations=max(checkpoints), loss=loss_config,
                     pooling="max", style_scale=style_size / max(content.shape[:2]), report_every=min(checkpoints),
                     optimizer=OptimizerConfig(tolerance=0.0), init=start.removesuffix("_projected"), seed=seed,
                     bounded=start.endswith("_projected"))
    reports = {}
    started = time.perf_counter()
    GatysStylizer(config, vgg).stylize(
        content, [style_image],
        on_progress=lambda p: reports.setdefault(p.iteration, (p.value, image_objective(p.image()), p.terms)))
    # A call may end before the iterations a report asked for (L-BFGS stops where its line search fails), so
    # each checkpoint takes the first report at or past it; past the last report (stopped early) it has no value.
    done = sorted(reports)
    scores = {}
    for iterations in checkpoints:
        iterate, image, terms = next((reports[n] for n in done if n >= iterations), (None, None, None))
        scores[f"{start}_lbfgs_{iterations}"] = iterate
        scores[f"{start}_lbfgs_{iterations}_image"] = image
        scores[f"{start}_lbfgs_{iterations}_terms"] = terms
    scores[f"{start}_lbfgs_iterations_run"] = done[-1] if done else 0
    scores[f"{start}_lbfgs_seconds"] = round(time.perf_counter() - started, 1)
    return scores


def bounded_lbfgs_baseline(objective, content, checkpoints, seed) -> dict:
    """The objective of scipy's L-BFGS-B held to [0, 255], from the same white noise, after each number of iterations.

    Its iterate is always a valid image, so ``noise_bounded_lbfgs_{n}_image`` equals ``noise_bounded_lbfgs_{n}``:
    the baseline a box-constrained optimizer sets for the delivered image.

    Args:
        objective: `make_objective`'s value-and-gradient of a flat float32 image like `content`.
        content: float32 [H, W, 3], the photo (only its shape is used).
        checkpoints: iteration counts to report.
        seed: seeds the white noise, as `GatysConfig.seed` does.
    """
    evaluate = tf.function(objective)

    def value_and_gradient(x):
        value, gradient, _ = evaluate(tf.constant(x, tf.float32))
        return float(value), gradient.numpy().astype(np.float64)

    values = []
    start = white_noise(content.shape, seed).reshape(-1).astype(np.float64)
    started = time.perf_counter()
    scipy.optimize.minimize(value_and_gradient, start, jac=True, method="L-BFGS-B",
                            bounds=scipy.optimize.Bounds(0.0, 255.0),
                            callback=lambda intermediate_result: values.append(float(intermediate_result.fun)),
                            options={"maxiter": max(checkpoints), "maxcor": OptimizerConfig().history_size,
                                     "ftol": 0.0, "gtol": 0.0, "maxfun": 20 * max(checkpoints)})
    scores = {}
    for iterations in checkpoints:
        value = values[iterations - 1] if len(values) >= iterations else None
        scores[f"noise_bounded_lbfgs_{iterations}"] = scores[f"noise_bounded_lbfgs_{iterations}_image"] = value
    scores["noise_bounded_lbfgs_iterations_run"] = len(values)
    scores["noise_bounded_lbfgs_seconds"] = round(time.perf_counter() - started, 1)
    return scores


def gatys_objective(metadata, vgg, style_image, content):
    """The Gatys objective (the model's own training loss settings) for images like `content`: `make_objective`'s
    value-and-gradient of a flat float32 image."""
    loss_config = _loss_config(metadata)
    style = image_io.resize_long_side(style_image, metadata["train_config"]["style_size"])
    grams = blended_style_grams(vgg, [style], [1.0], [layer for layer, _ in loss_config.style_layers])
    targets = vgg(tf.constant(content[None]), [layer for layer, _ in loss_config.content_layers])
    objective, _ = make_objective(vgg, content.shape, targets, grams, loss_config)
    return objective


def image_value(objective):
    """`gatys_objective`'s objective as a function of an image: float32 [H, W, 3] -> its value."""
    return lambda image: float(objective(tf.constant(image.reshape(-1)))[0])


def image_value_and_terms(objective, term_names):
    """`gatys_objective` as a function of an image, evaluated once: float32 [H, W, 3] -> (value, {term name: value})."""

    def value_and_terms(image):
        value, _, terms = objective(tf.constant(image.reshape(-1)))
        return float(value), dict(zip(term_names, terms.numpy().tolist()))

    return value_and_terms


def objective_function(metadata, vgg, style_image, content):
    """The Gatys objective (the model's own training loss settings) as a function of an image like `content`."""
    return image_value(gatys_objective(metadata, vgg, style_image, content))


LBFGS_REVISION = 3
"""Changes with any change to the in-graph L-BFGS that moves its results, or to what a baseline records, so
that cached baselines of an earlier one are measured again, not reused. 2: the first step is the Polyak step
(the 512 px white-noise stall). 3: each checkpoint also records the objective of the delivered image."""


def seeds_of_start(start: str, seeds: list[int]) -> list[int]:
    """The seeds a baseline start runs from: every one for a start from white noise, the first otherwise."""
    return seeds if start.startswith("noise") else seeds[:1]


def score_photo(network, metadata, vgg, style_image, photo, size, checkpoints, seeds, cache) -> dict:
    """Objective values for one photo: content, feed-forward and L-BFGS from each start after each checkpoint.

    `checkpoints` maps each start ("noise", "content", "noise_bounded", "noise_projected", "content_projected") to
    its iteration counts; `cache` maps a baseline's key (style, loss settings, photo, size, start, seed,
    checkpoints, `LBFGS_REVISION`) to its scores. The first of `seeds` gives the baselines' figures; with
    more than one, each start from noise is run from every seed, and ``{start}_lbfgs_{n}_seeds`` lists its
    objective after n iterations from each, ``..._mean`` is their mean and ``feed_forward_over_{start}_{n}_mean``
    the feed-forward objective over that mean (starts from the content photo draw no noise and run once).
    """
    loss_config = _loss_config(metadata)
    style_size = metadata["train_config"]["style_size"]
    content = image_io.resize_long_side(photo, size)
    objective = gatys_objective(metadata, vgg, style_image, content)
    value = image_value(objective)
    stylized = FastStylizer(network).stylize(content)
    feed_forward, feed_forward_terms = image_value_and_terms(objective, loss_config.term_names)(stylized)
    scores = {"content_photo": value(content), "feed_forward": feed_forward, "feed_forward_terms": feed_forward_terms}
    for start, counts in checkpoints.items():
        by_seed = []
        for seed in seeds_of_start(start, seeds):
            key = json.dumps([metadata["style"], metadata["train_config"]["loss"], style_size, float(content.sum()),
                              size, start, seed, counts, LBFGS_REVISION])
            if key not in cache and start == "noise_bounded":
                cache[key] = bounded_lbfgs_baseline(objective, content, counts, seed)
            elif key not in cache:
                cache[key] = lbfgs_baseline(vgg, loss_config, style_image, style_size, content, counts, start, seed,
                                            value)
            by_seed.append(cache[key])
        scores.update(by_seed[0])
        if len(by_seed) > 1:
            for iterations in counts:
                values = [baseline[f"{start}_lbfgs_{iterations}"] for baseline in by_seed]
                scores[f"{start}_lbfgs_{iterations}_seeds"] = values
                known = [v for v in values if v is not None]  # None: L-BFGS stopped before.
                mean = float(np.mean(known)) if known else None
                scores[f"{start}_lbfgs_{iterations}_mean"] = mean
                scores[f"feed_forward_over_{start}_{iterations}_mean"] = (
                    None if mean is None else round(scores["feed_forward"] / mean, 3))
        for iterations in counts:
            for suffix in ("", "_image"):
                baseline = scores[f"{start}_lbfgs_{iterations}{suffix}"]
                scores[f"feed_forward_over_{start}_{iterations}{suffix}"] = (
                    None if baseline is None else round(scores["feed_forward"] / baseline, 3))
            # Baselines cached before terms were recorded have none: a run with other checkpoints measures afresh.
            baseline_terms = scores.get(f"{start}_lbfgs_{iterations}_terms")
            if baseline_terms:
                scores[f"feed_forward_over_{start}_{iterations}_terms"] = {
                    name: round(scores["feed_forward_terms"][name] / term, 3) if term else None
                    for name, term in baseline_terms.items()}
    return scores


def held_out_photos(folder: str) -> list[Path]:
    """The photos in `folder`, sorted."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def _load_cache(path: str | None) -> dict:
    """The cached baselines of this `LBFGS_REVISION` (those of an earlier one are dropped when the file is written)."""
    entries = json.loads(Path(path).read_text()) if path and Path(path).is_file() else {}
    return {key: scores for key, scores in entries.items() if json.loads(key)[-1] == LBFGS_REVISION}


def _save_cache(path: str, cache: dict) -> None:
    """Writes ``cache`` merged into the file's current entries, so two runs at once keep each other's baselines."""
    merged = _load_cache(path)
    merged.update(cache)
    cache.update(merged)
    atomic_write_bytes(path, json.dumps(merged, indent=1).encode())


def main(argv=None) -> dict:
    args = parse_args(argv)
    names = args.models.split(",") if args.models else bundled_model_names()
    photos = held_out_photos(args.photos)[: args.max_photos]
    sizes = [int(s) for s in args.sizes.split(",")]
    counts = {"noise": args.iterations, "content": args.content_iterations, "noise_bounded": args.bounded_iterations,
              "noise_projected": args.bounded_iterations, "content_projected": args.content_iterations}
    unknown = set(args.starts.split(",")) - set(counts)
    if unknown:
        sys.exit(f"quality.py: unknown --starts {', '.join(sorted(unknown))}; choose from {', '.join(counts)}")
    checkpoints = {start: sorted(int(i) for i in counts[start].split(",")) for start in args.starts.split(",")}
    seeds = [int(seed) for seed in args.seeds.split(",")]
    vgg = VggFeatures(pooling="max")
    cache = _load_cache(args.baseline_cache)
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
                                           checkpoints, seeds, cache)
                _log(json.dumps(results[key]))
                if args.baseline_cache:
                    _save_cache(args.baseline_cache, cache)
    summary = {}
    for start, counts in checkpoints.items():
        suffixes = ["", "_image"] + (["_mean"] if len(seeds_of_start(start, seeds)) > 1 else [])
        for suffix in suffixes:
            name = f"feed_forward_over_{start}_{min(counts)}{suffix}"
            known = [r[name] for r in results.values() if r[name] is not None]  # None: L-BFGS stopped before.
            summary[f"worst_{name}"] = max(known) if known else None
    summary["results"] = results
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
