"""Helpers shared by the benchmarks in bench/: timing, FLOP counts, the conv peak, output.

A benchmark prints its progress to stderr and its figures as one JSON object
on the last line of stdout (`print_json`), so a caller can keep the last line
and parse it. Rates are in GFLOP/s (1e9 floating-point operations per second;
a multiply-add counts as two).
"""

import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from impasto.model.timing import time_call  # noqa: F401  (bench scripts call common.time_call)

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The repository root, found from this file's location (not the working directory)."""


def log(*parts) -> None:
    """Prints a progress line to stderr (stdout is kept for the JSON result)."""
    print(*parts, file=sys.stderr, flush=True)


def print_json(figures: dict) -> None:
    """Prints `figures` as one line of JSON on stdout.

    numpy scalars and arrays become Python numbers and lists, NaN and
    infinities become null, and anything else unknown becomes its ``str``.
    """
    print(json.dumps(_finite(figures), separators=(",", ":"), default=str), flush=True)


def _finite(value):
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def int_list(text: str) -> list[int]:
    """Parses a comma-separated list of positive integers, e.g. ``"256,512"`` (for argparse ``type=``)."""
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise ValueError(f"need positive integers separated by commas, got {text!r}")
    return values


def clocks() -> tuple[float, float]:
    """``(wall, cpu)`` now: the wall clock and this process's CPU time (all threads), in seconds."""
    return time.perf_counter(), time.process_time()


def time_call_cpu(function: Callable[[], object]) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of one call of `function`.

    CPU time counts the work of this process's threads only, so on a machine
    shared with other jobs it varies far less than the wall clock; ratios of
    CPU times are the steadier measure of overheads.
    """
    wall, cpu = clocks()
    function()
    wall_end, cpu_end = clocks()
    return wall_end - wall, cpu_end - cpu


def summarize(seconds: Iterable[float]) -> dict:
    """``{"best", "median", "mean", "samples"}`` of a list of durations, in seconds."""
    seconds = list(seconds)
    return {
        "best": min(seconds),
        "median": statistics.median(seconds),
        "mean": statistics.fmean(seconds),
        "samples": len(seconds),
    }


def conv_output_size(size: int, stride: int) -> int:
    """Output length of a ``"SAME"``-padded window op along one axis."""
    return -(-size // stride)


def conv_flops(height: int, width: int, kernel_shape, batch: int = 1) -> int:
    """FLOPs of one stride-1 ``"SAME"`` convolution: ``2 * N * H * W * kh * kw * Cin * Cout``."""
    kernel_height, kernel_width, channels_in, channels_out = kernel_shape
    return 2 * batch * height * width * kernel_height * kernel_width * channels_in * channels_out


def vgg_forward_flops(vgg, height: int, width: int, layers, batch: int = 1) -> int:
    """FLOPs of the VGG convolutions run to produce `layers` (biases, ReLUs and pooling not counted).

    Counts every conv up to the deepest requested one, halving the resolution
    (rounding up, as ``"SAME"`` pooling does) at each new block.

    Args:
        vgg: an ``impasto.model.lossnet.vgg.VggFeatures``.
        height: input image height, in pixels.
        width: input image width, in pixels.
        layers: layer names the caller asks for, e.g. ``config.all_layers``.
        batch: images per call.
    """
    from impasto.model.lossnet.vgg import layer_order

    deepest = max(layers, key=layer_order)
    total, previous_block = 0, 1
    for name, kernel_shape in vgg.kernel_shapes.items():
        block = layer_order(name)[0]
        if block != previous_block:
            height, width = conv_output_size(height, 2), conv_output_size(width, 2)
            previous_block = block
        total += conv_flops(height, width, kernel_shape, batch)
        if name == deepest:
            break
    return total


def conv_peak_function(batch: int = 4, size: int = 128, channels: int = 128, kernel: int = 3, warmup: int = 2):
    """The reference convolution as a warmed-up callable, and its FLOPs per call.

    The default is a plain 3x3 ``tf.nn.conv2d`` (float32, NHWC, ``"SAME"``) of a
    [4, 128, 128, 128] input with a [3, 3, 128, 128] kernel: 19.3 GFLOP a call.

    Returns:
        ``(run, flops)``: ``run()`` convolves once and waits for the result.
    """
    import tensorflow as tf

    inputs = tf.random.stateless_uniform([batch, size, size, channels], seed=(1, 2), minval=-1.0, maxval=1.0)
    weights = tf.random.stateless_normal([kernel, kernel, channels, channels], seed=(3, 4), stddev=0.05)
    convolve = tf.function(lambda: tf.nn.conv2d(inputs, weights, strides=1, padding="SAME")[0, 0, 0, 0])

    def run() -> None:
        convolve().numpy()

    for _ in range(warmup):
        run()
    return run, conv_flops(size, size, (kernel, kernel, channels, channels), batch)


def conv_peak_gflops(repeats: int = 5, **shape) -> dict:
    """Measures the reference convolution's rate (see `conv_peak_function` for `shape`).

    Returns:
        ``{"gflops": best rate, "median_gflops", "seconds": summarize(...), "flops"}``.
    """
    run, flops = conv_peak_function(**shape)
    seconds = [time_call(run) for _ in range(repeats)]
    return {
        "gflops": flops / min(seconds) / 1e9,
        "median_gflops": flops / statistics.median(seconds) / 1e9,
        "seconds": summarize(seconds),
        "flops": flops,
    }


def against_conv_peak(function: Callable[[], object], flops: int, repeats: int, with_peak: bool = True) -> dict:
    """Times `function` `repeats` times, each time right after a sample of the reference convolution.

    A conv sample runs the reference convolution (`conv_peak_function`) as many
    times as fit in one call of `function`, so that both sides of each pair are
    exposed alike to other jobs on the machine. ``fraction_of_peak`` compares
    the best wall times of each; ``fraction_of_peak_cpu`` compares work per CPU
    second, which a busy machine disturbs less but which hides time where only
    some of the threads have work.

    Args:
        function: the workload; warm it up first.
        flops: the work one call of `function` is counted as.
        repeats: pairs to time.
        with_peak: False times `function` alone (no peak figures).

    Returns:
        ``{"seconds", "cpu_seconds"}`` (see `summarize`) and ``"gflops"``, plus
        ``"peak_gflops"``, ``"peak_convs_per_sample"``, ``"peak_sample_seconds"``,
        ``"fraction_of_peak"``, ``"fraction_of_peak_median_pair"`` and
        ``"fraction_of_peak_cpu"`` when `with_peak`.
    """
    if with_peak:
        conv, one_conv_flops = conv_peak_function()
        calls = max(1, round(time_call(function) / time_call(conv)))
        sample_flops = calls * one_conv_flops
    times, peaks = [], []
    for _ in range(repeats):
        if with_peak:
            peaks.append(time_call_cpu(lambda: [conv() for _ in range(calls)]))
        times.append(time_call_cpu(function))
    wall, cpu = [t[0] for t in times], [t[1] for t in times]
    figures = {"seconds": summarize(wall), "cpu_seconds": summarize(cpu), "gflops": flops / min(wall) / 1e9}
    if with_peak:
        peak_wall, peak_cpu = [p[0] for p in peaks], [p[1] for p in peaks]
        pair_fractions = [(flops / t) / (sample_flops / p) for t, p in zip(wall, peak_wall)]
        figures.update(
            peak_gflops=sample_flops / min(peak_wall) / 1e9,
            peak_convs_per_sample=calls,
            peak_sample_seconds=summarize(peak_wall),
            fraction_of_peak=(flops / min(wall)) / (sample_flops / min(peak_wall)),
            fraction_of_peak_median_pair=statistics.median(pair_fractions),
            fraction_of_peak_cpu=(flops / min(cpu)) / (sample_flops / min(peak_cpu)),
        )
    return figures


def rss_bytes(pid: int | str = "self") -> int:
    """A process's resident memory now (VmRSS from /proc/PID/status), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS line in /proc/{pid}/status")


def environment() -> dict:
    """Versions and the CPU the numbers were measured on (its model, vector extensions and CPU count)."""
    import platform

    import numpy as np
    import tensorflow as tf

    from impasto.model.cpu import this_cpu

    cpu = this_cpu()
    figures = {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "cpu": cpu.model,
        "vector_extensions": list(cpu.extensions),
        "logical_cpus": cpu.logical_cpus,
        "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
    }
    if cpu.onednn_max_isa:
        figures["ONEDNN_MAX_CPU_ISA"] = cpu.onednn_max_isa
    return figures


def export_for_sizes(model_dir: Path, width: float, source: str | None, sizes: list[int],
                     tflite_model: bool = False) -> Path:
    """Exports version 1 of a network of `width` (random weights) or of `source` (a bundled model, run
    directory or .npz) to `model_dir`, with one size bucket per side in `sizes`, warmed at each; returns
    `model_dir`."""
    from impasto.export.exporter import export_model
    from impasto.export.signatures import ServingConfig
    from impasto.model.feedforward.bundles import load_network
    from impasto.model.feedforward.transformer import TransformerNet

    if source:
        network, metadata = load_network(source)
    else:
        network, metadata = TransformerNet(width=width), {"width": width, "style": "random"}
    config = ServingConfig(max_side=max(sizes), ladder=tuple(sorted(sizes)))
    log(f"exporting width {metadata['width']} with bucket sides {config.bucket_sides}"
        f"{' and model.tflite' if tflite_model else ''} ...")
    export_model(network, metadata, model_dir, 1, config, source=source or "random",
                 warmup_sizes=tuple((size, size) for size in sizes), tflite_model=tflite_model)
    return model_dir
