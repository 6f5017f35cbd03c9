"""Benchmark of feed-forward stylization against the runtimes a user would otherwise run the network on.

In one run, at each ``--sizes`` side (square images, batch 1) it times

* ``impasto``: the fast path as ``impasto stylize --method fast`` runs it, `FastStylizer` with
  ``engine="auto"``: the engine this CPU measured fastest for that size
  (`impasto.model.feedforward.engines`; its calibration is cached per CPU and is not part of
  the timings), and each of its engines on its own: ``impasto_tf`` (TensorFlow, oneDNN; what
  the SavedModel's ``serving_noxla`` runs), ``impasto_tf_xla`` and ``impasto_litert``
  (XNNPACK);
* the peers, each running the plain network, `ReferenceTransformer` (the page-long form of
  pytorch/examples ``fast_neural_style``, the same weights): ``onnxruntime`` on the ONNX graph
  a PyTorch export of it gives (bench/plain_onnx.py: Pad reflect, Conv, InstanceNormalization,
  Resize), ``litert`` (the plain network converted to ``.tflite``, XNNPACK), and TensorFlow
  itself, ``tf`` (a tf.function) and ``tf_xla``;
* and the 3x3 convolution peak of `common.conv_peak_function` (TensorFlow, 128 to 128
  channels on a [4, 128, 128, 128] input; ``--no-conv`` skips it).

Every runner takes its turn in each of ``--repeats`` rounds, in a shuffled order after a short
pause (`impasto.model.timing.time_in_turn`: a busy machine slows all alike, and TensorFlow's spinning threads
do not slow whoever comes next), after a warm-up call that checks every output against the
first runner's. Figures are medians over the rounds. The FLOPs of an image are its convolutions'
(``2 * Hout * Wout * k * k * Cin * Cout``, the network's, not an implementation's), and
``fraction_of_peak`` is an engine's rate over the conv's rate. Targets (issue 18): ``impasto``
at or below the fastest peer at 256 and 512 px, and at 512 px at least 0.9 of the conv peak.
The JSON names the CPU model and its vector extensions (AVX2, AVX-512, AMX);
``ONEDNN_MAX_CPU_ISA=AVX2`` shows what TensorFlow's oneDNN does on an AVX-512 machine held to
AVX2 (the other runtimes ignore it). Peers that are not installed (``onnxruntime``) are left out,
with a note. Progress goes to stderr; the figures are one JSON object on the last line of stdout.

Example:
    .venv/bin/python bench/speed.py --sizes 256,512 --repeats 5
"""

import argparse
import functools
import os
import statistics
import sys
from pathlib import Path

from impasto.model.tensorflow_import import import_tensorflow_quietly

import_tensorflow_quietly()  # First: the imports below load TensorFlow, whose start-up lines stay off stderr.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (bench/common.py)
import numpy as np  # noqa: E402
import plain_onnx  # noqa: E402  (bench/plain_onnx.py)
import tensorflow as tf  # noqa: E402

from impasto.model.cpu import usable_cpus  # noqa: E402
from impasto.model.feedforward import engines  # noqa: E402
from impasto.model.feedforward.bundles import load_network  # noqa: E402
from impasto.model.feedforward.litert_network import module_converter  # noqa: E402
from impasto.model.feedforward.litert_runtime import LiteRTStylizer  # noqa: E402
from impasto.model.feedforward.reference_transformer import ReferenceTransformer  # noqa: E402
from impasto.model.feedforward.stylizer import FastStylizer  # noqa: E402
from impasto.model.feedforward.transformer import MIN_SIDE, TransformerNet  # noqa: E402
from impasto.model.timing import time_in_turn  # noqa: E402

PEERS = ("onnxruntime", "litert", "tf", "tf_xla")
TARGET_SIZES = (256, 512)
TARGET_PEAK_FRACTION = 0.9
PEAK_SIZE = 512


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line flags; see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help="bundled model name, training run directory or .npz bundle "
                             "(default: a randomly initialised network of --width, which times the same)")
    parser.add_argument("--width", type=float, default=1.0,
                        help="width multiplier of the random network when no --model is given "
                             "(default: 1.0, the paper's)")
    parser.add_argument("--sizes", type=common.int_list, default=[256, 512],
                        help="square sides in px (default: 256,512)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default: 5)")
    parser.add_argument("--skip", default="", help="comma-separated runners to leave out, e.g. tf_xla,impasto_tf_xla")
    parser.add_argument("--no-conv", action="store_true", help="skip the conv peak (and fraction_of_peak)")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads for ONNX Runtime (default: 0, its own choice; LiteRT and impasto's "
                             "litert engine use every CPU this process may run on, TensorFlow its own choice)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if any(side % 4 or side < MIN_SIDE for side in args.sizes):
        parser.error(f"--sizes must be multiples of 4, at least {MIN_SIDE} (the ONNX peer takes no edge padding)")
    return args


def network_flops(network: TransformerNet, height: int, width: int) -> int:
    """FLOPs of one image through `network`'s convolutions (2 per multiply-add; norms and activations not counted).

    Each conv counts ``2 * Hout * Wout * k * k * Cin * Cout`` at the resolution it runs at:
    halved by each stride-2 encoder conv, doubled by each upsampling (which resizes before
    convolving). `height` and `width` are multiples of 4.
    """
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


def _litert_plain(weights: dict):
    """The plain network converted as it stands (no conversion-friendly form), run by LiteRT with XNNPACK."""
    content = module_converter(ReferenceTransformer(weights)).convert()
    interpreter = LiteRTStylizer("<plain network>", threads=usable_cpus(), content=content)
    return lambda images: interpreter.run(images[0])[None]


def runners(network: TransformerNet, args) -> tuple[dict, dict, dict, engines.EngineChoice]:
    """``(impasto, peers, notes, choice)``: ``{name: run(images [1, S, S, 3]) -> np.ndarray}`` for each side,
    notes, and the engine choice impasto's ``auto`` follows."""
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    weights = network.weights_dict()
    notes = {}
    common.log("choosing impasto's engine (engines.choose_engine; measured once per CPU, then cached) ...")
    auto = FastStylizer(network, engine="auto", report=common.log)
    impasto = {"impasto": lambda images: auto.stylize_batch(images).numpy()}
    for engine in engines.ENGINES:
        if f"impasto_{engine}" not in skip:
            stylizer = FastStylizer(network, engine=engine)
            impasto[f"impasto_{engine}"] = lambda images, stylizer=stylizer: stylizer.stylize_batch(images).numpy()
    plain = ReferenceTransformer(weights)
    spec = [tf.TensorSpec([None, None, None, 3], tf.float32)]
    peers = {"tf": tf.function(plain.__call__, input_signature=spec),
             "tf_xla": tf.function(plain.__call__, input_signature=spec, jit_compile=True)}
    peers = {name: lambda images, run=run: run(images).numpy() for name, run in peers.items()}
    common.log("converting the plain network for LiteRT ...")
    peers["litert"] = _litert_plain(weights)
    try:
        run, notes["onnxruntime"] = plain_onnx.onnxruntime_runner(weights, args.threads)
        peers["onnxruntime"] = run
    except ImportError as error:
        notes["onnxruntime"] = f"skipped: {error.name} is not installed (pip install -r requirements-dev.txt)"
    peers = {name: peers[name] for name in PEERS if name in peers and name not in skip}
    return impasto, peers, notes, auto.choice


def measure(named_runs: dict, conv, flops: int, size: int, repeats: int) -> dict:
    """Every runner (and the conv, if given) in turn for `repeats` rounds at one side."""
    images = np.random.default_rng(size).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    reference = None
    differences = {}
    for name, run in named_runs.items():
        common.log(f"  {size} px: warming up {name}")
        output = np.clip(run(images), 0.0, 255.0)
        reference = output if reference is None else reference
        differences[name] = float(np.abs(output - reference).max())
    calls = {name: functools.partial(run, images) for name, run in named_runs.items()}
    if conv is not None:
        calls["conv"] = conv[0]
    seconds = time_in_turn(calls, repeats, log=lambda line: common.log(f"  {size} px, {line}"))
    conv_seconds = seconds.pop("conv", None)
    conv_gflops = conv[1] / statistics.median(conv_seconds) / 1e9 if conv is not None else None
    result = {"size": size, "gflop_per_image": flops / 1e9, "conv_gflops": conv_gflops, "runners": {}}
    for name, values in seconds.items():
        rate = flops / statistics.median(values) / 1e9
        result["runners"][name] = {
            "median_ms": 1000 * statistics.median(values),
            "best_ms": 1000 * min(values),
            "gflops": rate,
            "fraction_of_peak": rate / conv_gflops if conv_gflops else None,
            "max_abs_difference_from_first": differences[name],
        }
    return result


def check_targets(results: list[dict], peers: list[str]) -> dict:
    """The issue's targets: impasto at or below the fastest peer at `TARGET_SIZES`, >= 0.9 of peak at `PEAK_SIZE`."""
    targets = {}
    for result in results:
        size, figures = result["size"], result["runners"]
        fastest = min(peers, key=lambda name: figures[name]["median_ms"]) if peers else None
        if fastest and size in TARGET_SIZES:
            ratio = figures["impasto"]["median_ms"] / figures[fastest]["median_ms"]
            targets[f"fastest_peer_{size}"] = fastest
            targets[f"impasto_over_fastest_peer_{size}"] = ratio
            targets[f"at_or_below_fastest_peer_{size}"] = ratio <= 1.0
        if size == PEAK_SIZE and figures["impasto"]["fraction_of_peak"] is not None:
            targets[f"fraction_of_peak_{size}"] = figures["impasto"]["fraction_of_peak"]
            targets[f"at_least_{TARGET_PEAK_FRACTION}_of_peak_{size}"] = \
                figures["impasto"]["fraction_of_peak"] >= TARGET_PEAK_FRACTION
    return targets


def main(argv=None) -> dict:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    network, description = build_network(args)
    common.log(f"network: {description}")
    impasto, peers, notes, choice = runners(network, args)
    conv = None if args.no_conv else common.conv_peak_function()
    results = []
    for size in args.sizes:
        results.append(measure({**impasto, **peers}, conv, network_flops(network, size, size), size, args.repeats))
    for result in results:
        result["impasto_engine"] = choice.engine_for(result["size"], result["size"])
    figures = {
        "benchmark": "speed",
        "model": description,
        "width": network.width,
        "batch": 1,
        "repeats": args.repeats,
        "statistic": "median over rounds",
        "conv_reference": None if conv is None else
        "tf.nn.conv2d 3x3, 128->128 channels, float32 NHWC SAME, input 4x128x128x128",
        "peers": {name: notes.get(name, "measured") for name in PEERS if name in peers or name in notes},
        "engine_choice_seconds": {str(side): values for side, values in choice.seconds.items()},
        "results": results,
        "targets": check_targets(results, list(peers)),
        "load_average_1min": {"start": load_before, "end": os.getloadavg()[0]},
        "environment": common.environment(),
    }
    common.print_json(figures)
    return figures


if __name__ == "__main__":
    main()
