"""The transformer network's layout: kernel sizes, strides, block count and channel counts.

Plain numbers (and how the variables name the residual blocks), no TensorFlow, so that flag
parsing and training settings can name them without loading it.
`impasto.model.feedforward.transformer` builds the network from them.
"""

import re

ENCODER_KERNELS = ((9, 1), (3, 2), (3, 2))
"""(kernel size, stride) of each encoder conv."""
DECODER_KERNEL = 3
"""Kernel size of the conv after each x2 upsampling."""
OUTPUT_KERNEL = 9
"""Kernel size of the last conv, to RGB."""
RESIDUAL_BLOCKS = 5
"""Residual blocks of the paper's network, and of every network unless it is given another count."""
FULL_WIDTH_CHANNELS = (32, 64, 128)
"""Channels after the first, second and third encoder conv at width multiplier 1 (the paper's)."""


def channel_counts(width: float) -> tuple[int, int, int]:
    """The network's three channel counts at width multiplier `width` (rounded, at least 4)."""
    return tuple(max(4, int(round(count * width))) for count in FULL_WIDTH_CHANNELS)


_RESIDUAL_PATH = re.compile(r"residuals/(\d+)/")


def residual_block_count(arrays) -> int:
    """How many residual blocks the variables of `TransformerNet.weights_dict()` (paths to arrays) hold, 0 if none."""
    indices = {int(found.group(1)) for path in arrays if (found := _RESIDUAL_PATH.match(path))}
    return max(indices) + 1 if indices else 0
