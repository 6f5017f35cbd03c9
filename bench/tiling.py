"""Benchmark of tiled stylization of large images: peak memory, wall time, agreement, seams.

For the fast method, at each of ``--sizes`` (square images: a photo from ``--photos``
scaled up to N x N, with a little grain so it has texture at every scale) it runs
`FastStylizer` tiled (``--tile`` px tiles, statistics shared by all tiles) and, at
the sizes in ``--untiled-sizes``, untiled, each in a fresh child process, so that
each peak RSS (the child's ``ru_maxrss``) belongs to one run only. It reports:

- ``peak_rss_mib``: the child's peak resident memory; ``baseline_rss_mib``: its
  resident memory just before stylizing (libraries, model and the input image);
- ``seconds``: wall time of the stylize call alone (after a 64 px call has traced
  the function);
- ``max_abs_difference`` / ``mean_abs_difference``: tiled against untiled output,
  in levels of [0, 255], where both ran;
- ``seam_ratio`` (`impasto.testing.seam_ratio`): the mean absolute step between
  neighbouring pixels across tile boundaries over the same elsewhere (1.0: no
  boundary), for the tiled output, the untiled output (same boundaries, where it
  ran) and ``naive`` tiling: every tile stylized on its own with its own
  instance-norm statistics and no halo, as a user would do by hand.

For the optimize method it runs a ``--optimize-size`` px, three-stage pyramid
(``--optimize-iterations`` L-BFGS iterations per stage) tiled (stages over 1 MP run
the objective tile by tile), at each of ``--optimize-tiles``, and untiled, in child
processes too, and reports peak RSS, wall time and the final loss of each, and the
memory L-BFGS's history needs at the last stage (proportional to the image, tiled
or not).

``--statistics-check SIZE`` measures how accurate the statistics of the network's first
instance norm are on the SIZE px test card: as the untiled network takes them (TensorFlow's
fused batch norm, float32) and as tiling accumulates them, each against float64 numpy.

``--save-dir`` keeps each tiled output as PNG (the README's crop comes from the
4096 px one). Progress goes to stderr; the figures are one JSON object on the last
line of stdout.

Example:
    .venv/bin/python bench/tiling.py --sizes 1024,2048 --untiled-sizes 1024 --no-optimize
    .venv/bin/python bench/tiling.py --no-fast --optimize-tiles 512
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (bench/common.py)

GRAIN = 4.0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", default=str(common.REPO_ROOT / "data/samples/photos"),
                        help="photos; the first is used")
    parser.add_argument("--styles", default=str(common.REPO_ROOT / "data/samples/styles"),
                        help="style images (optimize: the first is used)")
    parser.add_argument("--model", default="starry_night", help="bundled model name, run dir or .npz (fast method)")
    parser.add_argument("--sizes", type=common.int_list, default=[1024, 2048, 4096, 8192], help="square sides, fast")
    parser.add_argument("--untiled-sizes", type=common.int_list, default=[1024, 2048, 4096],
                        help="sizes also run untiled (8192 untiled needs more than this machine's 24 GiB)")
    parser.add_argument("--tile", type=int, default=512, help="tile side (fast)")
    parser.add_argument("--no-naive", action="store_true", help="skip the hand-tiling comparison")
    parser.add_argument("--optimize-size", type=int, default=2048, help="optimize: output side (0 = skip)")
    parser.add_argument("--no-optimize", action="store_true", help="skip the optimize method")
    parser.add_argument("--optimize-iterations", type=int, default=10, help="L-BFGS iterations per pyramid stage")
    parser.add_argument("--optimize-tiles", type=common.int_list, default=[512, 256],
                        help="optimize: tile sides to run (multiples of 16), besides untiled")
    parser.add_argument("--no-fast", action="store_true", help="skip the fast method")
    parser.add_argument("--save-dir", type=Path, help="keep the tiled outputs here as PNG")
    parser.add_argument("--statistics-check", type=int, default=0, metavar="SIZE",
                        help="also compare the first instance norm's statistics at SIZE px, whole (fused batch norm, "
                             "as untiled runs take them) and tiled, with float64 (0 = skip)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # JSON job for a child process.
    return parser.parse_args(argv)


def _first_image(folder: str) -> Path:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    if not files:
        raise SystemExit(f"no images in {folder}")
    return files[0]


def test_card(photo: Path, size: int):
    """The photo scaled to size x size, plus fixed grain: float32 [size, size, 3] in [0, 255]."""
    import numpy as np

    from impasto.model import image_io

    image = image_io.resize_image(image_io.load_image(photo), size, size)
    rng = np.random.default_rng(size)
    for top in range(0, size, 1024):  # In strips, to keep float64 noise small.
        strip = image[top:top + 1024]
        strip += rng.normal(0.0, GRAIN, strip.shape).astype(np.float32)
    return np.clip(image, 0.0, 255.0, out=image)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child_fast(job: dict) -> dict:
    import numpy as np

    from impasto.model.feedforward.bundles import load_network
    from impasto.model.feedforward.stylizer import FastStylizer
    from impasto.model.tiling import Tiling
    from impasto.testing import seam_ratio

    network, _ = load_network(job["model"])
    image = test_card(Path(job["photo"]), job["size"])
    tiling = Tiling.always(job["tile"]) if job["mode"] == "tiled" else Tiling.never()
    stylizer = FastStylizer(network, tiling=tiling)
    stylizer.stylize(image[:64, :64])  # Traces the function this mode runs, outside the timing.
    baseline = common.rss_bytes() / 2**20
    started = time.perf_counter()
    if job["mode"] == "naive":
        tile, size = job["tile"], job["size"]
        output = np.empty_like(image)
        for top in range(0, size, tile):
            for left in range(0, size, tile):
                output[top:top + tile, left:left + tile] = stylizer.stylize(image[top:top + tile, left:left + tile])
    else:
        output = stylizer.stylize(image)
    seconds = time.perf_counter() - started
    figures = {"seconds": seconds, "peak_rss_mib": _peak_rss_mib(), "baseline_rss_mib": baseline,
               "seam_ratio": seam_ratio(output, job["tile"]) if job["size"] > job["tile"] else None}
    if job.get("output"):
        np.save(job["output"], output)
    return figures


def _child_optimize(job: dict) -> dict:
    from impasto.model import image_io
    from impasto.model.optimize.gatys import GatysConfig, GatysStylizer
    from impasto.model.tiling import Tiling

    content = image_io.load_image(job["photo"])
    style = image_io.load_image(job["style"])
    tiling = Tiling(GatysConfig().tiling.tile_pixels, job["tile"]) if job["mode"] == "tiled" else Tiling.never()
    config = GatysConfig(size=job["size"], iterations=job["iterations"], scales=3, tiling=tiling,
                         report_every=job["iterations"])
    reports = []
    baseline = common.rss_bytes() / 2**20
    started = time.perf_counter()
    result = GatysStylizer(config).stylize(content, [style], on_progress=reports.append)
    history_bytes = 2 * config.optimizer.history_size * result.size * 4  # L-BFGS (s, y) pairs, float32.
    return {"seconds": time.perf_counter() - started, "peak_rss_mib": _peak_rss_mib(), "baseline_rss_mib": baseline,
            "lbfgs_history_mib": history_bytes / 2**20, "output_shape": list(result.shape),
            "final_loss": reports[-1].value, "stage_losses": [report.value for report in reports]}


def _child_statistics(job: dict) -> dict:
    import numpy as np
    import tensorflow as tf

    from impasto.model.feedforward import tiled_network
    from impasto.model.feedforward.bundles import load_network

    network, _ = load_network(job["model"])
    prepared = network.prepare(test_card(Path(job["photo"]), job["size"])[None])
    before_norm = network.encode(prepared, stop=0)  # [1, H, W, C]: the first conv, before its instance norm.
    channels = before_norm.shape[-1]
    values = before_norm.numpy().reshape(-1, channels).astype(np.float64)
    mean, variance = values.mean(axis=0), values.var(axis=0)
    _, fused_mean, fused_variance = tf.compat.v1.nn.fused_batch_norm(
        before_norm, tf.ones([channels]), tf.zeros([channels]), is_training=True)
    fused_variance = fused_variance.numpy() * (values.shape[0] - 1) / values.shape[0]  # Returned Bessel-corrected.
    tiled_mean, tiled_variance = tiled_network._moments_over_tiles(
        prepared, job["tile"], tiled_network.encoder_halo(network), lambda tile: network.encode(tile, stop=0),
        scale=(1, 1), groups=1)
    figures = {"pixels": values.shape[0], "smallest_channel_std": float(np.sqrt(variance.min()))}
    for name, (m, v) in {"fused": (fused_mean.numpy(), fused_variance),
                         "tiled": (tiled_mean.numpy(), tiled_variance.numpy())}.items():
        figures[f"{name}_mean_max_abs_error"] = float(np.abs(m - mean).max())
        figures[f"{name}_mean_max_error_in_std"] = float((np.abs(m - mean) / np.sqrt(variance)).max())
        figures[f"{name}_variance_max_relative_error"] = float((np.abs(v - variance) / variance).max())
    figures["peak_rss_mib"] = _peak_rss_mib()
    return figures


def _run_child(job: dict) -> dict:
    """Runs `job` in a fresh Python process; its figures, or how it failed."""
    common.log(f"  {job['method']} {job['mode']} {job['size']} px ...")
    finished = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True)
    if finished.returncode != 0:
        reason = f"signal {-finished.returncode}" if finished.returncode < 0 else f"exit {finished.returncode}"
        common.log(finished.stderr[-2000:])
        return {"failed": reason}
    figures = json.loads(finished.stdout.strip().splitlines()[-1])
    seconds = f"{figures['seconds']:.1f} s, " if "seconds" in figures else ""
    common.log(f"    {seconds}peak {figures['peak_rss_mib']:.0f} MiB")
    return figures


def _fast(args, photo: Path, work: Path) -> dict:
    import numpy as np

    results = {}
    for size in args.sizes:
        row, outputs = {}, {}
        modes = ["tiled"] + (["untiled"] if size in args.untiled_sizes else []) + ([] if args.no_naive else ["naive"])
        for mode in modes:
            outputs[mode] = work / f"{mode}_{size}.npy" if mode != "naive" else None
            job = {"method": "fast", "mode": mode, "size": size, "tile": args.tile, "model": args.model,
                   "photo": str(photo), "output": str(outputs[mode]) if outputs[mode] else None}
            row[mode] = _run_child(job)
        if "untiled" in row and "failed" not in row["untiled"] and "failed" not in row["tiled"]:
            tiled, untiled = np.load(outputs["tiled"]), np.load(outputs["untiled"])
            difference = np.abs(tiled - untiled)
            row["max_abs_difference"], row["mean_abs_difference"] = float(difference.max()), float(difference.mean())
        if args.save_dir and "failed" not in row["tiled"]:
            from impasto.model import image_io

            args.save_dir.mkdir(parents=True, exist_ok=True)
            image_io.save_image(np.load(outputs["tiled"]), args.save_dir / f"tiled_{size}.png")
        for path in outputs.values():
            if path and path.exists():
                path.unlink()
        results[str(size)] = row
    return results


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        job = json.loads(args.child)
        children = {"fast": _child_fast, "optimize": _child_optimize, "statistics": _child_statistics}
        common.print_json(children[job["method"]](job))
        return
    photo, style = _first_image(args.photos), _first_image(args.styles)
    common.log(f"photo {photo.name}, style {style.name}, model {args.model}, tiles {args.tile} px")
    figures = {"photo": photo.name, "model": args.model, "tile": args.tile}
    if not args.no_fast:
        with tempfile.TemporaryDirectory(prefix="impasto_tiling_") as folder:
            figures["fast"] = _fast(args, photo, Path(folder))
    if not args.no_optimize and args.optimize_size:
        job = {"method": "optimize", "size": args.optimize_size, "photo": str(photo), "style": str(style),
               "iterations": args.optimize_iterations}
        figures["optimize"] = {f"tiled_{tile}": _run_child({**job, "mode": "tiled", "tile": tile})
                               for tile in args.optimize_tiles}
        figures["optimize"]["untiled"] = _run_child({**job, "mode": "untiled", "tile": None})
    if args.statistics_check:
        figures["statistics"] = _run_child({"method": "statistics", "mode": "whole and tiled",
                                            "size": args.statistics_check, "tile": args.tile, "model": args.model,
                                            "photo": str(photo)})
    figures["environment"] = common.environment()
    figures["load_average"] = os.getloadavg()
    common.print_json(figures)


if __name__ == "__main__":
    main()
