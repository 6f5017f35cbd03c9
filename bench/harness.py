"""What the server benchmarks (bad_inputs.py, soak.py) share: an `impasto serve` child process and a work folder.

The process is `impasto.testing.ServerProcess` (free loopback ports, readiness,
SIGTERM then SIGKILL), which the tests use too, with the server's memory added.
"""

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import common  # bench/common.py

from impasto.testing import ServerProcess

REPO_ROOT = Path(__file__).resolve().parents[1]


class ServeProcess(ServerProcess):
    """`impasto serve ARGS` on two free ports of 127.0.0.1, started and ready.

    Args:
        args: flags after ``impasto serve`` (the ports are added).
        log_path: the server's stdout and stderr.
        timeout: seconds to wait for it to serve.

    Raises:
        AssertionError: it exited or did not serve in time (with its log).
    """

    def __init__(self, args: list, log_path: Path, timeout: float = 300.0):
        super().__init__([str(arg) for arg in args], log_path)
        self.wait_ready(timeout)

    def rss_bytes(self) -> int:
        """The server's resident memory now (VmRSS), in bytes."""
        return common.rss_bytes(self.process.pid)

    def alive(self) -> bool:
        return self.process.poll() is None

    def __enter__(self) -> "ServeProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


@contextlib.contextmanager
def work_dir(path: Path | None, prefix: str) -> Iterator[Path]:
    """`path` (created if needed and kept), or a temporary folder removed afterwards."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        yield Path(folder)
