"""What `impasto export` can be asked for, without TensorFlow: the export targets and the warmup sizes.

Kept apart from the modules that build the export so that `impasto export --help` and
its flag checks answer at once.
"""

from impasto.model.errors import InvalidInputError

CPU_TARGET = "cpu"
"""Export target: no XLA anywhere (TensorFlow's own kernels; any tensorflow_model_server)."""
GPU_TARGET = "gpu"
"""Export target: the network XLA-compiled in every signature but ``serving_noxla``."""
TARGETS = (CPU_TARGET, GPU_TARGET)

DEFAULT_WARMUP_SIZES = ((256, 256), (512, 512))
"""(height, width) of the default warmup requests: the graph runtime is built by the first,
and with the second the buckets of most web-sized photos' thumbnails and previews are compiled."""
MAX_WARMUP_SIDE = 16384


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """``"512x512,1024x768"`` -> ((512, 512), (1024, 768)), as (height, width); ``""`` -> ().

    Raises:
        InvalidInputError: an entry that is not HEIGHTxWIDTH with sides 1..16384.
    """
    sizes = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        height, _, width = entry.lower().partition("x")
        if not (height.isdigit() and width.isdigit() and 1 <= int(height) <= MAX_WARMUP_SIDE
                and 1 <= int(width) <= MAX_WARMUP_SIDE):
            raise InvalidInputError(f"warmup size {entry!r}: use HEIGHTxWIDTH with sides from 1 to {MAX_WARMUP_SIDE}")
        sizes.append((int(height), int(width)))
    return tuple(sizes)
