"""Memory of a real `impasto serve` process: glibc's malloc arenas are bounded from its first thread on."""

import concurrent.futures
from pathlib import Path

import pytest

from impasto.serving import memory

from test_serving_rest import _b64, _call

HEAP_BYTES = 64 << 20
"""glibc's HEAP_MAX_SIZE on 64-bit systems: every arena but the main one lives in heaps of this size and alignment."""

pytestmark = pytest.mark.skipif(not memory.is_glibc(), reason="malloc arenas are glibc's")


def _arena_heaps(pid: int) -> int:
    """How many glibc arena heaps the process maps: 64 MiB-aligned anonymous regions of 64 MiB, usable part
    (rw-p) first and the reserved rest (---p) after it."""
    regions = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        start, end = (int(address, 16) for address in fields[0].split("-"))
        regions.append((start, end, fields[1], len(fields) > 5))  # The sixth field names a file or [heap] etc.
    heaps = 0
    for index, (start, end, permissions, named) in enumerate(regions):
        if named or permissions != "rw-p" or start % HEAP_BYTES:
            continue
        following = regions[index + 1] if index + 1 < len(regions) else None
        if following and following[0] == end and following[2] == "---p" and not following[3]:
            end = following[1]
        heaps += end - start == HEAP_BYTES
    return heaps


def test_serve_keeps_to_one_malloc_arena_per_core_under_concurrent_requests(tiny_server, small_images):
    body = {"instances": [_b64(small_images["koala.png"])]}
    heaps_at_start = _arena_heaps(tiny_server.process.pid)  # The models load side by side: in arena heaps too.
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: _call(tiny_server, "/v1/models/tiny:predict", body)[0], range(48)))
    assert statuses == [200] * 48
    # The main arena is the [heap]; the others may each grow by a heap. Unbounded, glibc gives the 16 request
    # threads arenas of their own, up to 8 per core: about 14 more heaps here on 2 cores.
    added = _arena_heaps(tiny_server.process.pid) - heaps_at_start
    assert heaps_at_start >= 1 and added <= 2 * (memory.arena_max() - 1)


def test_an_arena_limit_from_the_environment_is_kept():
    assert memory.tune_malloc({"MALLOC_ARENA_MAX": "8"}) is None
    assert memory.tune_malloc({"GLIBC_TUNABLES": "glibc.malloc.arena_max=8"}) is None
    assert memory.arena_max() >= 2
