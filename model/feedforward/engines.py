"""Which engine runs the feed-forward network fastest on this CPU: measured once per CPU, then cached.

One network and its weights, three ways to run it (tests/test_engines.py holds their outputs equal):

    tf      `TransformerNet` in a tf.function: TensorFlow's oneDNN kernels. The exported
            SavedModel's ``serving_noxla`` signatures run this form.
    tf_xla  the same function compiled by XLA.
    litert  `impasto.model.feedforward.litert_network`, the form with every op in XNNPACK,
            converted to a float32 ``.tflite`` in memory and run by LiteRT (XNNPACK).

Which is fastest depends on the CPU: oneDNN's, XLA's and XNNPACK's convolution kernels rank
differently on AVX2, AVX-512 and AMX machines (docs/benchmarks.md, "Feed-forward inference").
So nothing is assumed: `choose_engine` times each engine on a random network of the same width
at `CALIBRATION_SIDES`, keeps the medians in a JSON cache keyed by the CPU
(`impasto.model.cpu.this_cpu`), the library versions and the width, and `EngineChoice.engine_for`
gives, for an image size, the engine that won at the calibrated size nearest to it.
"""

import datetime
import json
import math
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from impasto.model.cpu import this_cpu, usable_cpus
from impasto.model.errors import InvalidInputError
from impasto.model.feedforward.transformer import TransformerNet
from impasto.model.files import atomic_write_bytes
from impasto.model.timing import time_in_turn

ENGINES = ("tf", "tf_xla", "litert")
AUTO = "auto"
CALIBRATION_SIDES = (256, 512)
"""Square sides the engines are timed at; an image uses the winner at the side nearest its pixel count."""
CALIBRATION_REPEATS = 3
CACHE_DIR_VARIABLE = "IMPASTO_CACHE_DIR"
CACHE_FILE = "engine_choice.json"

Runner = Callable[[tf.Tensor], tf.Tensor]
"""Runs the network on float32 [N, H, W, 3] in [0, 255] and returns the same shape and range."""


def check_engine(name: str) -> str:
    """`name` if it is an engine or `AUTO`; else InvalidInputError naming the choices."""
    if name != AUTO and name not in ENGINES:
        raise InvalidInputError(f"unknown engine {name!r}; choose {AUTO} or one of {', '.join(ENGINES)}")
    if name == "litert" and not litert_available():
        raise InvalidInputError("engine litert needs the ai-edge-litert package (pip install ai-edge-litert)")
    return name


def litert_available() -> bool:
    """Whether the LiteRT runtime (``ai-edge-litert``) is installed."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def available_engines() -> tuple[str, ...]:
    """The `ENGINES` whose runtime is installed, in `ENGINES` order."""
    return tuple(engine for engine in ENGINES if engine != "litert" or litert_available())


def engine_threads() -> int:
    """The CPU threads the engines run on: TensorFlow's intra-op thread setting where one was made (`impasto batch`
    divides the cores among its worker processes), else every usable CPU; LiteRT's XNNPACK gets the same number."""
    return tf.config.threading.get_intra_op_parallelism_threads() or usable_cpus()


def make_runner(engine: str, network: TransformerNet) -> Runner:
    """A `Runner` of `network` on `engine` (one of `ENGINES`); the litert one converts the network first."""
    if engine in ("tf", "tf_xla"):
        return tf.function(network.__call__, jit_compile=engine == "tf_xla",
                           input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    if engine != "litert":
        raise ValueError(f"not an engine: {engine!r}")
    from impasto.model.feedforward.litert_network import tflite_converter
    from impasto.model.feedforward.litert_runtime import LiteRTStylizer

    interpreter = LiteRTStylizer(f"<{network.name} in memory>", threads=engine_threads(),
                                 content=tflite_converter(network.weights_dict()).convert())

    def run(images: tf.Tensor) -> tf.Tensor:
        images = np.asarray(images, np.float32)
        return tf.constant(np.stack([interpreter.run(image) for image in images]))

    return run


@dataclass(frozen=True)
class EngineChoice:
    """Calibration results and the choice they make.

    Attributes:
        seconds: ``{side: {engine: median seconds of one side x side image}}``.
    """

    seconds: dict[int, dict[str, float]]

    def engine_for(self, height: int, width: int) -> str:
        """The fastest engine at the calibrated side nearest (in pixel count, log scale) to height x width."""
        pixels = max(1, height * width)
        side = min(self.seconds, key=lambda side: abs(math.log(side * side / pixels)))
        return min(self.seconds[side], key=self.seconds[side].get)


def calibration_key(width: float, engines: Sequence[str], sides: Sequence[int] = CALIBRATION_SIDES) -> str:
    """What a calibration is valid for, its key in the cache: the CPU, the library versions, the threads, the
    network width, the engines and the sides timed."""
    from impasto import __version__

    versions = [f"impasto {__version__}", f"tensorflow {tf.__version__}"]
    if "litert" in engines:
        from importlib.metadata import version

        versions.append(f"ai-edge-litert {version('ai-edge-litert')}")
    return " | ".join([this_cpu().key(), *versions, f"threads {engine_threads()}", f"width {width:g}",
                       "engines " + ",".join(engines), "sides " + ",".join(map(str, sides))])


def cache_path() -> Path:
    """The calibration cache: ``$IMPASTO_CACHE_DIR`` or ``~/.cache/impasto``, file `CACHE_FILE`."""
    folder = os.environ.get(CACHE_DIR_VARIABLE) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache",
                                                        "impasto")
    return Path(folder) / CACHE_FILE


def measure_engines(width: float, engines: Sequence[str], sides: Sequence[int] = CALIBRATION_SIDES,
                    repeats: int = CALIBRATION_REPEATS) -> dict[int, dict[str, float]]:
    """``{side: {engine: median seconds}}`` of a random network of `width` on a random image, after a warm-up
    (which traces, compiles or converts); the engines take turns (`impasto.model.timing.time_in_turn`) so that
    each sees the same machine load."""
    network = TransformerNet(width=width, seed=0)
    runners = {engine: make_runner(engine, network) for engine in engines}
    seconds = {}
    for side in sides:
        images = tf.random.stateless_uniform([1, side, side, 3], seed=[side, 0], maxval=255.0)
        for run in runners.values():
            np.asarray(run(images))
        calls = {engine: (lambda run=run, images=images: np.asarray(run(images))) for engine, run in runners.items()}
        times = time_in_turn(calls, repeats)
        seconds[side] = {engine: statistics.median(values) for engine, values in times.items()}
    return seconds


def choose_engine(width: float, engines: Sequence[str] | None = None, sides: Sequence[int] = CALIBRATION_SIDES,
                  repeats: int = CALIBRATION_REPEATS, cache: Path | None = None,
                  report: Callable[[str], None] | None = None) -> EngineChoice:
    """The cached choice for this CPU and `width`; measured (and cached) when there is none.

    Args:
        width: the network's width multiplier (the weights do not change the timings).
        engines: the candidates (default: every engine whose runtime is installed).
        sides, repeats: what `measure_engines` times.
        cache: the JSON file (default `cache_path()`). A missing, unreadable or foreign file is
            measured over, never an error.
        report: called with one line before a measurement starts (it takes seconds).
    """
    engines = tuple(engines or available_engines())
    cache = cache or cache_path()
    key = calibration_key(width, engines, sides)
    entries = _read_cache(cache)
    entry = entries.get(key)
    if isinstance(entry, dict) and _valid_seconds(entry.get("seconds"), engines, sides):
        return EngineChoice({int(side): values for side, values in entry["seconds"].items()})
    if report:
        report(f"timing {', '.join(engines)} on this CPU to choose the fastest (once; cached in {cache}) ...")
    seconds = measure_engines(width, engines, sides, repeats)
    entries[key] = {"seconds": {str(side): values for side, values in seconds.items()},
                    "measured": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    try:
        atomic_write_bytes(cache, (json.dumps(entries, indent=1, sort_keys=True) + "\n").encode())
    except OSError as error:  # A read-only home still stylizes; it measures again next time.
        print(f"note: could not cache the engine choice in {cache}: {error}", file=sys.stderr)
    return EngineChoice(seconds)


def _read_cache(cache: Path) -> dict:
    try:
        entries = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _valid_seconds(seconds, engines: Sequence[str], sides: Sequence[int]) -> bool:
    if not isinstance(seconds, dict) or sorted(seconds) != sorted(str(side) for side in sides):
        return False
    return all(isinstance(values, dict) and sorted(values) == sorted(engines)
               and all(isinstance(value, float) and value > 0 for value in values.values())
               for values in seconds.values())
