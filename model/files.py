"""Atomic file and directory writes: a reader never sees a half-written result."""

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; results are for others to read too.
        with os.fdopen(handle, "wb") as tmp_file:
            tmp_file.write(data)
            tmp_file.flush()
            os.fsync(tmp_file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def atomic_directory(final_path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary directory beside `final_path`; renames it into place on success.

    The temporary name starts with a dot, so a server that polls the parent for
    numbered version directories never sees it. On any error it is removed.

    Raises:
        FileExistsError: `final_path` already exists.
    """
    final_path = Path(final_path)
    if final_path.exists():
        raise FileExistsError(f"{final_path} already exists")
    final_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{final_path.name}.", suffix=".tmp", dir=final_path.parent))
    os.chmod(tmp_dir, 0o777 & ~_umask())  # mkdtemp makes 0700; a model server may run as another user.
    try:
        yield tmp_dir
        os.rename(tmp_dir, final_path)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def pause_for_crash_test(variable: str, where: str | os.PathLike) -> None:
    """Test hook: when the environment variable `variable` holds a number of seconds, says so on
    stderr (``<variable>: pausing <seconds> s in <where>``) and sleeps, so that a test can kill
    this real process midway through a write; unset (always, outside tests) it does nothing.
    """
    seconds = os.environ.get(variable)
    if seconds:
        print(f"{variable}: pausing {seconds} s in {where}", file=sys.stderr, flush=True)
        time.sleep(float(seconds))
