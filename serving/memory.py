"""glibc malloc arenas for `impasto serve`: bounded before the process starts its first thread.

A cold server's RSS used to grow in its first minute of load (`bench/soak.py`),
then kept creeping up. /proc/PID/smaps puts that growth in glibc's malloc
arenas, while the main [heap] shrinks and the mapped files and thread stacks
barely move (docs/benchmarks.md, "Serving memory", has the figures). glibc gives every thread that
allocates while another holds its arena an arena of its own, up to 8 per core,
and each keeps its own high-water mark; image and activation buffers settle in
them once glibc's dynamic mmap threshold has risen to their size. No warm-up
request made before the server reports ready can fill them: the gRPC and REST
handler threads only exist once clients connect, and which arena a thread
gets depends on timing.

`tune_malloc` bounds the arenas to one per core the process may run on (at
least 2), as ``MALLOC_ARENA_MAX`` would: threads then reuse each other's
freed memory instead of growing arenas of their own: RSS growth from ready
halves, at a few percent of throughput (docs/benchmarks.md).

It calls mallopt(3), which acts on the process itself but only before glibc
fixes its arena limit (when threads first need arenas), so `impasto.cli`
calls it first thing for ``impasto serve``, before TensorFlow starts its
threads. A limit the environment sets (``MALLOC_ARENA_MAX`` or
``GLIBC_TUNABLES=glibc.malloc.arena_max=N``) was applied by glibc at start-up
and is kept; other C libraries are left alone.

Fixing the mmap threshold (``MALLOC_MMAP_THRESHOLD_``) as well would return
every large buffer to the system at once, but made each request cost more CPU
(page faults on every fresh buffer), so it is left to glibc.
"""

import ctypes
import os
from collections.abc import Mapping

from impasto.model.cpu import usable_cpus

_M_ARENA_MAX = -8  # mallopt(3) parameter, from <malloc.h>.
ENVIRONMENT_VARIABLE = "MALLOC_ARENA_MAX"
_TUNABLE = "glibc.malloc.arena_max"


def is_glibc() -> bool:
    """Whether this process runs on glibc, whose mallopt parameters this module sets."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError, AttributeError):
        return False


def arena_max() -> int:
    """The arena limit `tune_malloc` sets: one per CPU this process may run on, at least 2."""
    return max(2, usable_cpus())


def tune_malloc(environ: Mapping[str, str] = os.environ) -> int | None:
    """Bounds glibc's malloc arenas for this process; call it before the process starts any thread.

    Args:
        environ: the environment the process started with; an arena limit it sets is kept.

    Returns:
        The limit set, or None when nothing was set (the environment sets one, or not glibc).
    """
    if ENVIRONMENT_VARIABLE in environ or _TUNABLE in environ.get("GLIBC_TUNABLES", "") or not is_glibc():
        return None
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    limit = arena_max()
    return limit if mallopt(_M_ARENA_MAX, limit) == 1 else None


def release_free_memory() -> bool:
    """Hands glibc's free heap memory back to the system (malloc_trim(3)); returns whether any was.

    Loading a version and replaying its warmup allocate far more than they keep (graph
    optimization and the warmup images' activations); trimming once a version is ready
    took about 110 MiB off a one-model server's RSS (see docs/serving.md). Not glibc: does nothing.
    """
    if not is_glibc():
        return False
    malloc_trim = ctypes.CDLL(None).malloc_trim
    malloc_trim.argtypes, malloc_trim.restype = (ctypes.c_size_t,), ctypes.c_int
    return malloc_trim(0) == 1
