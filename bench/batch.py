"""Throughput of `impasto batch` against a plain in-process loop and `impasto client` + `impasto serve`.

On the same N photos (the sample photos, cycled with flips and crops so every
file differs, resized to --size on the long side and saved as JPEG in nested
folders), in one run, side by side:

* ``loop``: this process, one image at a time: decode, `FastStylizer`, PNG,
  atomic write. Timed after the model is loaded and traced (the stylizer's own speed).
* ``batch``: `impasto batch` with the DirectRunner's --workers processes, timed
  end to end (process start, Beam, workers loading TensorFlow and the model).
  ``steady`` counts from its first output to its last (file times), the rate once running.
* ``client``: `impasto client --concurrency C` against `impasto serve` (started and
  warmed first, the model exported without XLA), end to end and steady the same way.
* ``resume``: the same `impasto batch` command again on the finished output.

Targets: batch >= 90% of the loop's images/s; resuming a finished run < 5% of the
full run's time. Figures: one JSON object on the last line of stdout.

Example:
    .venv/bin/python bench/batch.py --photos 200 --size 512 --workers 2
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (bench/common.py)
import numpy as np  # noqa: E402

from impasto.model import image_io  # noqa: E402

IMPASTO = Path(sys.executable).parent / "impasto"
SAMPLE_PHOTOS = common.REPO_ROOT / "data" / "samples" / "photos"
TARGET = {"batch_over_loop": 0.9, "resume_over_full": 0.05}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=200, help="number of photos (default 200)")
    parser.add_argument("--size", type=int, default=512, help="long side of every photo (default 512)")
    parser.add_argument("--model", default="starry_night", help="bundled model, run dir or .npz (default starry_night)")
    parser.add_argument("--workers", type=int, default=2, help="DirectRunner worker processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=4, help="impasto client requests in flight (default 4)")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: loop, batch, client")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser


def make_photos(folder: Path, count: int, size: int) -> list[Path]:
    """`count` distinct JPEGs (long side `size`) in folders of 20, from the sample photos."""
    sources = [image_io.load_image(path) for path in sorted(SAMPLE_PHOTOS.glob("*.jpg"))]
    photos = []
    for index in range(count):
        image = sources[index % len(sources)]
        variant = index // len(sources)
        if variant % 2:
            image = image[:, ::-1]
        crop = (variant // 2) % 5 * 0.02  # Up to 8% off each side.
        height, width = image.shape[:2]
        image = image[int(height * crop):height - int(height * crop), int(width * crop):width - int(width * crop)]
        path = folder / f"group{index // 20:03d}" / f"photo{index:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_io.encode_image(image_io.resize_long_side(np.ascontiguousarray(image), size), "JPEG"))
        photos.append(path)
    return photos


def output_rates(folder: Path, count: int, wall: float) -> dict:
    """End-to-end and steady (first to last output file) images/s of a run that wrote `count` PNGs."""
    times = sorted(path.stat().st_mtime for path in folder.rglob("*.png"))
    if len(times) != count:
        raise RuntimeError(f"{folder}: {len(times)} outputs, expected {count}")
    steady = (count - 1) / (times[-1] - times[0]) if count > 1 and times[-1] > times[0] else None
    return {"seconds": wall, "images_per_second": count / wall, "steady_images_per_second": steady}


def run_loop(photos: list[Path], inputs: Path, out: Path, model: str) -> dict:
    from impasto.model.feedforward.bundles import load_network
    from impasto.model.feedforward.stylizer import FastStylizer

    stylizer = FastStylizer(load_network(model)[0])
    stylizer.stylize(image_io.load_image(photos[0]))  # Trace outside the timed loop.
    started = time.perf_counter()
    for photo in photos:
        destination = (out / photo.relative_to(inputs)).with_suffix(".png")
        image_io.save_image(stylizer.stylize(image_io.load_image(photo)), destination)
    wall = time.perf_counter() - started
    return {"seconds": wall, "images_per_second": len(photos) / wall}


def run_timed(command: list[str], log_path: Path) -> float:
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {finished.returncode}:\n{log_path.read_text()[-3000:]}")
    return wall


def run_client(inputs: Path, out: Path, work: Path, model: str, concurrency: int, count: int, size: int) -> dict:
    import load  # bench/load.py: starts `impasto serve` and waits until it serves.

    from impasto.export.exporter import export_model
    from impasto.export.signatures import ServingConfig
    from impasto.model.feedforward.bundles import load_network

    network, metadata = load_network(model)
    ladder = tuple(sorted({max(16, round(size * fraction / 4) * 4) for fraction in (0.5, 0.75, 1.0)}))
    # Buckets up to the photos' size only (the server warms each up as it loads); no XLA, slower on CPU.
    export_model(network, metadata, work / "models" / "bench", 1,
                 ServingConfig(max_side=ladder[-1], ladder=ladder, target="cpu"))
    process, target = load.start_server(work / "models" / "bench", "bench", None, work / "serve.log")
    try:
        warm = work / "warm"
        run_timed([str(IMPASTO), "client", str(next(inputs.rglob("*.jpg"))), "--out", str(warm), "--server", target,
                   "--model", "bench", "--no-progress"], work / "client_warm.log")
        wall = run_timed([str(IMPASTO), "client", str(inputs), "--out", str(out), "--server", target,
                          "--model", "bench",
                          "--concurrency", str(concurrency), "--no-progress"], work / "client.log")
    finally:
        process.terminate()
        process.wait(timeout=60)
    return output_rates(out, count, wall)


def main() -> None:
    args = build_parser().parse_args()
    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="impasto_bench_batch_"))
    figures = {"environment": common.environment(), "photos": args.photos, "size": args.size, "model": args.model,
               "workers": args.workers, "target": TARGET}
    try:
        inputs = work / "photos"
        common.log(f"making {args.photos} photos at {args.size} px in {inputs} ...")
        photos = make_photos(inputs, args.photos, args.size)
        if "loop" not in skip:
            common.log("loop: in-process FastStylizer ...")
            figures["loop"] = run_loop(photos, inputs, work / "loop", args.model)
        if "batch" not in skip:
            common.log(f"batch: impasto batch, DirectRunner with {args.workers} worker processes ...")
            command = [str(IMPASTO), "batch", "--input", str(inputs), "--output", str(work / "batch"),
                       "--model", args.model, "--", f"--direct_num_workers={args.workers}"]
            wall = run_timed(command, work / "batch.log")
            figures["batch"] = output_rates(work / "batch", args.photos, wall)
            common.log("resume: the same command again ...")
            figures["resume"] = {"seconds": run_timed(command, work / "resume.log")}
            figures["resume"]["over_full"] = figures["resume"]["seconds"] / wall
        if "client" not in skip:
            common.log(f"client: impasto client --concurrency {args.concurrency} against impasto serve ...")
            figures["client"] = run_client(inputs, work / "client", work, args.model, args.concurrency, args.photos,
                                           args.size)
        if "loop" in figures:
            loop_rate = figures["loop"]["images_per_second"]
            for name in ("batch", "client"):
                if name in figures:
                    figures[name]["over_loop"] = figures[name]["images_per_second"] / loop_rate
                    steady = figures[name]["steady_images_per_second"]
                    figures[name]["steady_over_loop"] = steady / loop_rate if steady else None
    finally:
        if args.keep:
            common.log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    common.print_json(figures)


if __name__ == "__main__":
    main()
