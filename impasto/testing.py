"""What the tests and the bench scripts share, and nothing else imports.

- `IMPASTO_COMMAND`, `free_port`, `ServerProcess`: the real `impasto serve` as a
  child process on free loopback ports.
- `compare_with_reload`: an export reloaded from disk beside the in-memory module.
- `seam_ratio`: how much tile boundaries stand out in a stylized image.
- `random_vgg_weights`: a randomly initialised VGG, for plumbing tests and as an untrained control.

Library code never imports this module. The two test hooks that must stay in library
code (a test pauses a real process mid-write, then kills it) are
`impasto.model.files.pause_for_crash_test` calls, named by their variables
``IMPASTO_EXPORT_TEST_PAUSE`` and ``IMPASTO_BATCH_WRITE_DELAY``.
"""

import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from impasto.export import keys
from impasto.export.signatures import StylizeModule
from impasto.model.lossnet.weights import CAFFE, VggWeights

IMPASTO_COMMAND = (sys.executable, "-m", "impasto")
"""The `impasto` command of the running Python (no path into a virtualenv)."""


PORT_TAKEN_RESTARTS = 3
"""How many times `ServerProcess.wait_ready` starts the server again on new ports when one was taken."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """A real `impasto serve` subprocess on free loopback ports; its log goes to `log_path`.

    Args:
        args: flags after ``impasto serve`` (the ports are added).
        log_path: the server's stdout and stderr.
        rest: also serve REST (on a second free port); otherwise ``--rest_api_port 0``.
    """

    def __init__(self, args: list[str], log_path: Path, rest: bool = True):
        self.args, self.log_path, self.rest = [str(arg) for arg in args], log_path, rest
        self._spawn()

    def _spawn(self) -> None:
        """Starts the child on ports that are free now (another process may still take one first)."""
        self.port, self.rest_port = free_port(), (free_port() if self.rest else 0)
        self.target, self.rest_url = f"127.0.0.1:{self.port}", f"http://127.0.0.1:{self.rest_port}"
        command = [*IMPASTO_COMMAND, "serve", "--port", str(self.port),
                   "--rest_api_port", str(self.rest_port), *self.args]
        with open(self.log_path, "wb") as log:  # The child keeps its own copy of the file descriptor.
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120.0) -> "ServerProcess":
        """Waits for the "serving models" line, starting the server again on new ports if one was taken.

        Raises:
            AssertionError: the process exited or did not serve in time (with its log); it is stopped.
        """
        deadline = time.monotonic() + timeout
        restarts_left = PORT_TAKEN_RESTARTS
        while "serving models" not in self.log():
            exited = self.process.poll() is not None
            if exited and restarts_left and "cannot listen on" in self.log():  # serve's own message, gRPC or REST
                restarts_left -= 1  # Another process took a port between free_port() and the child's bind.
                self._spawn()
                continue
            if exited or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"impasto serve did not start (exit {self.process.returncode}):\n{self.log()}")
            time.sleep(0.1)
        return self

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit code (SIGKILL after `timeout` seconds)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def compare_with_reload(module: StylizeModule, export_dir: str | os.PathLike, image_bytes: list[bytes]) -> dict:
    """Reloads an export and runs every signature beside the in-memory module on the same inputs.

    Args:
        module: the in-memory module the export was made from (or an equivalent one).
        export_dir: the version directory.
        image_bytes: encoded images, any sizes; the tensor signature gets the first one.

    Returns:
        {signature name: max abs difference}, in 8-bit levels of the decoded PNGs for
        the byte signatures and in float [0, 255] units for stylize_tensor;
        infinity where an output's shape differs.
    """
    loaded = tf.saved_model.load(str(export_dir))
    batch = tf.constant(image_bytes)
    count = len(image_bytes)
    first = tf.io.decode_image(image_bytes[0], channels=3, expand_animations=False)
    inputs = {
        keys.SERVING_DEFAULT: {keys.IMAGE_BYTES: batch},
        keys.SERVING_NOXLA: {keys.IMAGE_BYTES: batch},
        keys.STYLIZE_CONTROLS: {keys.IMAGE_BYTES: batch,
                                keys.STRENGTH: tf.linspace(1.0, 0.25, count),
                                keys.PRESERVE_COLOR: tf.constant([i % 2 == 1 for i in range(count)])},
        keys.STYLIZE_TENSOR: {keys.IMAGES: tf.cast(first, tf.float32)[None]},
    }
    differences = {}
    for name, arguments in inputs.items():
        expected = getattr(module, name)(**arguments)
        reloaded = loaded.signatures[name](**arguments)
        output_key = keys.SIGNATURES[name].outputs[0].key
        if name == keys.STYLIZE_TENSOR:
            pairs = [(expected[output_key].numpy(), reloaded[output_key].numpy())]
        else:
            pairs = [(_png_pixels(a), _png_pixels(b)) for a, b in zip(expected[output_key].numpy(),
                                                                      reloaded[output_key].numpy())]
        differences[name] = max(_max_difference(a, b) for a, b in pairs)
    return differences


def _png_pixels(data: bytes) -> np.ndarray:
    return tf.io.decode_png(data).numpy().astype(np.float64)


def _max_difference(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))


def seam_ratio(image: np.ndarray, tile_size: int) -> float:
    """How much tile boundaries stand out: 1.0 means not at all.

    The mean absolute difference between neighbouring pixels across the boundaries
    of `tile_size` tiles (between columns, and rows, k * tile_size - 1 and k *
    tile_size), divided by the same mean over the other neighbouring pairs at the
    same phase modulo gcd(tile_size, 16): the network's stride-4 layers (and VGG's
    stride-16 ones) make steps vary with the phase, even in an untiled result.
    Tiles stylized on their own (own statistics, no halo) score well above 1.

    Args:
        image: [H, W, C] with at least one tile boundary and one pair elsewhere.
    """
    image = np.asarray(image, np.float64)
    period = math.gcd(tile_size, 16)
    sums, counts = np.zeros(2), np.zeros(2)  # [boundary, elsewhere]
    for axis in (0, 1):
        steps = np.abs(np.diff(image, axis=axis)).mean(axis=(1 - axis, 2))  # One value per neighbouring pair.
        position = np.arange(steps.size)
        boundary = (position + 1) % tile_size == 0
        elsewhere = ((position + 1) % period == 0) & ~boundary
        sums += steps[boundary].sum(), steps[elsewhere].sum()
        counts += boundary.sum(), elsewhere.sum()
    if counts.min() == 0:
        raise ValueError(f"an image of {image.shape[1]}x{image.shape[0]} has no {tile_size}-pixel tile boundary "
                         f"or no other pair to compare it with")
    return float((sums[0] / counts[0]) / (sums[1] / counts[1]))


def random_vgg_weights(channels_divisor: int = 1, seed: int = 0, convs_per_block=(2, 2, 3, 3, 3)) -> VggWeights:
    """A randomly initialised VGG (He-normal), for plumbing tests and as the untrained control.

    Args:
        channels_divisor: divides VGG's channel counts (64..512); 8 gives a tiny, fast network.
        seed: numpy seed.
        convs_per_block: (2, 2, 3, 3, 3) is VGG16, (2, 2, 4, 4, 4) VGG19.
    """
    rng = np.random.default_rng(seed)
    layers, channels_in = {}, 3
    for block, convs in enumerate(convs_per_block, start=1):
        channels_out = max(1, (64, 128, 256, 512, 512)[block - 1] // channels_divisor)
        for conv in range(1, convs + 1):
            std = np.sqrt(2.0 / (9 * channels_in))
            kernel = rng.normal(0.0, std, (3, 3, channels_in, channels_out)).astype(np.float32)
            layers[f"block{block}_conv{conv}"] = (kernel, np.zeros(channels_out, np.float32))
            channels_in = channels_out
    return VggWeights(layers=layers, preprocessing=CAFFE, description=f"random (seed {seed}, /{channels_divisor})")
