"""Benchmark of feed-forward stylization (Johnson et al.'s network): time per image and efficiency.

At each size (square images of that many pixels) and batch size it times one
forward pass of the network through `FastStylizer`, without XLA (``tf``) and
with it (``tf_xla``), and through ONNX Runtime (``onnxruntime``: the same
network and weights converted with tf2onnx, default CPU session options), the
alternative a user would pick for CPU inference. The FLOPs of a forward pass
are counted from the network's conv layers, ``2 * Hout * Wout * k * k * Cin *
Cout`` per conv at the padded size the network actually computes (inputs are
edge-padded to a multiple of 4, at least 16 px), per image: the network's
FLOPs, not the implementation's (its last conv runs on 4x4 pixel blocks with
1.8x the multiply-adds, uncounted; the upsampling convs count what they run).
The rate is set against the rate of a 3x3 convolution (128 to 128 channels, on
a 4x128x128x128 input) measured in the same run. Batches of images of 512x512 px
or more go through one image at a time, as `FastStylizer` runs them on CPU;
ONNX Runtime gets them the same way (it is faster so too).

So that a busy machine skews both sides alike, the conv and every engine are
timed in rounds (conv, tf, tf_xla, onnxruntime, conv); each figure is the best
of ``--repeats`` rounds, and ``fraction_of_peak`` is the best network rate over
the best conv rate at that size and batch (``paired_fraction_of_peak``: the
median over rounds of the ratio to the faster of the round's two convs). The
ratio still moves with the machine's load (the 1-minute load average is in the
JSON): on a busy machine the single big conv slows down more than the network
does (2.6x against 1.4x on a 2-core machine at load 7), which overstates the
ratio; compare runs made at similar load. It then checks
the issue's targets at 512 px, at every batch size measured:

1. the network without XLA runs at >= 70% of the conv rate;
2. it is faster than ONNX Runtime on the same network.

Progress goes to stderr; the figures are one JSON object on the last line of
stdout. ONNX Runtime needs ``pip install -r requirements-bench.txt``; without
it (or with ``--no-onnx``) those figures are skipped, with a note in the JSON.

Example:
    .venv/bin/python bench/speed.py --sizes 256,512 --batches 1 --repeats 3
"""

import argparse
import functools
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (bench/common.py)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from impasto.model.feedforward.bundles import load_network  # noqa: E402
from impasto.model.feedforward.stylizer import ONE_AT_A_TIME_PIXELS, FastStylizer  # noqa: E402
from impasto.model.feedforward.transformer import MIN_SIDE, TransformerNet  # noqa: E402

ENGINES = ("tf", "tf_xla", "onnxruntime")
TARGET_PEAK_FRACTION = 0.70
TARGET_SIZE = 512
ONNX_OPSET = 17


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line flags; see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default=None,
        help="bundled model name, training run directory or .npz bundle "
             "(default: a randomly initialised network of --width, which times the same)",
    )
    parser.add_argument("--width", type=float, default=1.0,
                        help="width multiplier of the random network when no --model is given "
                             "(default: 1.0, the paper's)")
    parser.add_argument("--sizes", type=common.int_list, default=[256, 512, 1024],
                        help="square image sides in px (default: 256,512,1024)")
    parser.add_argument("--batches", type=common.int_list, default=[1, 4], help="batch sizes (default: 1,4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per size and batch (default: 3)")
    parser.add_argument("--no-xla", action="store_true", help="skip the XLA-compiled network")
    parser.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads for TensorFlow and ONNX Runtime (default: 0, each library's own choice)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def padded_side(side: int) -> int:
    """The side the network computes at: a multiple of 4, at least `MIN_SIDE` (see `TransformerNet`)."""
    return max(MIN_SIDE, -(-side // 4) * 4)


def network_flops(network: TransformerNet, height: int, width: int) -> int:
    """FLOPs of one image through `network`'s convolutions (2 per multiply-add; norms and activations not counted).

    Each conv counts ``2 * Hout * Wout * k * k * Cin * Cout`` at the resolution
    it runs at: the padded input, halved by each stride-2 encoder conv, doubled
    by each upsampling (which resizes before convolving).
    """
    height, width = padded_side(height), padded_side(width)

    def conv(layer, h, w):
        k, _, channels_in, channels_out = layer.kernel.shape
        h, w = -(-h // layer.stride), -(-w // layer.stride)
        return 2 * h * w * k * k * channels_in * channels_out, h, w

    total = 0
    for layer in network.encoder:
        flops, height, width = conv(layer, height, width)
        total += flops
    for block in network.residuals:
        total += conv(block.first, height, width)[0] + conv(block.second, height, width)[0]
    for layer in network.decoder:
        height, width = 2 * height, 2 * width
        total += conv(layer.conv, height, width)[0]
    return total + conv(network.output_conv, height, width)[0]


def build_network(args) -> tuple[TransformerNet, str]:
    """The network to time and how it was chosen."""
    if args.model:
        network, metadata = load_network(args.model)
        return network, f"{args.model} (width {metadata['width']})"
    return TransformerNet(width=args.width, seed=0), f"random init, width {args.width}"


def onnx_session(network: TransformerNet, threads: int):
    """``(run, note)``: ``run(images)`` stylizes with ONNX Runtime, or None with the reason in `note`."""
    try:
        import onnxruntime
        import tf2onnx
    except ImportError as error:
        return None, f"ONNX Runtime skipped: {error.name} is not installed (pip install -r requirements-bench.txt)"
    common.log("converting the network to ONNX with tf2onnx ...")
    function = tf.function(network.__call__)
    signature = [tf.TensorSpec([None, None, None, 3], tf.float32, name="images")]
    model, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=ONNX_OPSET)
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(images: np.ndarray) -> np.ndarray:
        batch, height, width = images.shape[:3]
        if batch > 1 and height * width >= ONE_AT_A_TIME_PIXELS:  # As FastStylizer does on CPU (also faster here).
            return np.concatenate([session.run(None, {input_name: image[None]})[0] for image in images])
        return session.run(None, {input_name: images})[0]

    note = (f"tf2onnx {tf2onnx.__version__} (opset {ONNX_OPSET}), onnxruntime {onnxruntime.__version__}, "
            "CPUExecutionProvider, default session options; batches split as FastStylizer splits them")
    return run, note


def engines(network: TransformerNet, args) -> tuple[dict, dict]:
    """``({engine: run(images) -> np.ndarray}, notes)`` for every engine asked for and available."""
    plain = FastStylizer(network, jit_compile=False)
    runs = {"tf": lambda images: plain.stylize_batch(images).numpy()}
    notes = {}
    if args.no_xla:
        notes["tf_xla"] = "skipped (--no-xla)"
    else:
        compiled = FastStylizer(network, jit_compile=True)
        runs["tf_xla"] = lambda images: compiled.stylize_batch(images).numpy()
    if args.no_onnx:
        notes["onnxruntime"] = "skipped (--no-onnx)"
    else:
        run, note = onnx_session(network, args.threads)
        notes["onnxruntime"] = note
        if run is None:
            common.log(note)
        else:
            runs["onnxruntime"] = lambda images: np.clip(run(images), 0.0, 255.0)
    return runs, notes


def measure(runs: dict, conv_run, conv_flops: int, flops: int, size: int, batch: int, repeats: int) -> dict:
    """Times every engine and the conv in interleaved rounds at one size and batch."""
    images = np.random.default_rng(size * 10 + batch).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    reference = None
    agreement = {}
    for name, run in runs.items():  # Warm up (traces, XLA compiles) and check the engines agree.
        common.log(f"  {size} px, batch {batch}: warming up {name}")
        first = common.time_call(functools.partial(run, images))
        output = run(images)
        if reference is None:
            reference = output
        agreement[name] = float(np.abs(output - reference).max())
        agreement[name + "_first_call_s"] = first
    conv_seconds, round_conv, seconds = [], [], {name: [] for name in runs}
    for round_index in range(repeats):
        before = common.time_call(conv_run)
        for name, run in runs.items():
            seconds[name].append(common.time_call(functools.partial(run, images)))
        conv_seconds += [before, common.time_call(conv_run)]  # The conv on both sides of the engines.
        round_conv.append(min(conv_seconds[-2:]))
        common.log(f"  {size} px, batch {batch}, round {round_index + 1}/{repeats}: conv {round_conv[-1]:.3f} s, "
                   + ", ".join(f"{name} {values[-1]:.3f} s" for name, values in seconds.items()))
    conv_rate = conv_flops / min(conv_seconds) / 1e9
    result = {"size": size, "batch": batch, "gflop_per_image": flops / 1e9, "conv_gflops": conv_rate,
              "conv_seconds": common.summarize(conv_seconds), "engines": {}}
    for name, values in seconds.items():
        rate = flops * batch / min(values) / 1e9
        paired = [(flops * batch / value) / (conv_flops / conv) for value, conv in zip(values, round_conv)]
        result["engines"][name] = {
            "seconds_per_image": min(values) / batch,
            "median_seconds_per_image": statistics.median(values) / batch,
            "gflops": rate,
            "fraction_of_peak": rate / conv_rate,
            "paired_fraction_of_peak": statistics.median(paired),
            "first_call_seconds": agreement[name + "_first_call_s"],
            "max_abs_difference_from_tf": agreement[name],
            "seconds": common.summarize(values),
        }
    return result


def check_targets(results: list[dict]) -> dict:
    """The issue's targets at `TARGET_SIZE` px, for every batch size measured there."""
    found = [r for r in results if r["size"] == TARGET_SIZE]
    if not found:
        return {"note": f"not measured: needs size {TARGET_SIZE}"}
    targets = {"size": TARGET_SIZE, "fraction_of_peak_target": TARGET_PEAK_FRACTION, "by_batch": {}}
    for result in found:
        tf_figures, ort = result["engines"]["tf"], result["engines"].get("onnxruntime")
        entry = {
            "fraction_of_peak": tf_figures["fraction_of_peak"],
            "paired_fraction_of_peak": tf_figures["paired_fraction_of_peak"],
            "meets_peak_fraction": tf_figures["fraction_of_peak"] >= TARGET_PEAK_FRACTION,
            "speedup_over_onnxruntime": None,
            "faster_than_onnxruntime": None,
        }
        if ort is not None:
            entry["speedup_over_onnxruntime"] = ort["seconds_per_image"] / tf_figures["seconds_per_image"]
            entry["faster_than_onnxruntime"] = tf_figures["seconds_per_image"] < ort["seconds_per_image"]
        targets["by_batch"][str(result["batch"])] = entry
    entries = targets["by_batch"].values()
    targets["meets_peak_fraction"] = all(entry["meets_peak_fraction"] for entry in entries)
    compared = [entry["faster_than_onnxruntime"] for entry in entries if entry["faster_than_onnxruntime"] is not None]
    targets["faster_than_onnxruntime"] = all(compared) if compared else None
    return targets


def main(argv=None) -> dict:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    network, description = build_network(args)
    common.log(f"network: {description}")
    runs, notes = engines(network, args)
    conv_run, conv_flops = common.conv_peak_function()
    results = []
    for size in args.sizes:
        flops = network_flops(network, size, size)
        for batch in args.batches:
            results.append(measure(runs, conv_run, conv_flops, flops, size, batch, args.repeats))
    figures = {
        "benchmark": "speed",
        "model": description,
        "width": network.width,
        "repeats": args.repeats,
        "conv_reference": "tf.nn.conv2d 3x3, 128->128 channels, float32 NHWC SAME, input 4x128x128x128",
        "conv_gflop_per_call": conv_flops / 1e9,
        "engines": {name: notes.get(name, "measured") for name in ENGINES if name in runs or name in notes},
        "results": results,
        "targets": check_targets(results),
        "load_average_1min": {"start": load_before, "end": os.getloadavg()[0]},
        "environment": common.environment(),
    }
    common.print_json(figures)
    return figures


if __name__ == "__main__":
    main()
