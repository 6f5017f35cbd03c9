"""Deepens a trained transformer by residual blocks that start as the identity (Net2DeeperNet).

Chen et al. 2016 ("Net2Net") also grow a trained network in depth: new layers
start as the identity, so the deeper network computes exactly what the trained
one did, and training goes on from there with more capacity. Here a new
residual block is appended after the last one (before the decoder). Its two
convolutions get fresh random kernels, and the instance-norm scale and offset
that end the block (after its second convolution, before the skip sum) start
at zero, so the block adds nothing: ``x + 0``. This is the zero-initialised
last normalisation of Goyal et al. 2017: the scale's gradient is not zero (it
is the normalised activation times the incoming gradient), so the block starts
contributing from the first step, and its convolutions learn once the scale
has moved off zero.
"""

import re

import numpy as np

from impasto.model.feedforward.layout import channel_counts

_RESIDUAL_PATH = re.compile(r"residuals/(\d+)/")


def residual_block_count(arrays: dict[str, np.ndarray]) -> int:
    """How many residual blocks the variables of `TransformerNet.weights_dict()` hold (0 if none)."""
    indices = {int(found.group(1)) for path in arrays if (found := _RESIDUAL_PATH.match(path))}
    return max(indices) + 1 if indices else 0


def deepen_weights(arrays: dict[str, np.ndarray], residual_blocks: int, width: float,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """`TransformerNet.weights_dict()` of the network with identity residual blocks appended.

    Args:
        arrays: the trained network's variables by path, e.g. ``"residuals/4/second/scale"``.
        residual_blocks: the block count wanted, at least the trained network's.
        width: the network's width multiplier (sets the blocks' channel count).
        seed: seeds the new blocks' kernels.

    Returns:
        float32 arrays by path: the trained ones unchanged, and for each new block ``i``
        ``residuals/i/{first,second}/{kernel,bias,scale,offset}``: kernels [3, 3, C, C] drawn
        as `TransformerNet` draws them, biases zero, the first norm's scale one and offset
        zero, the second norm's scale and offset zero.

    Raises:
        ValueError: `residual_blocks` is fewer than the network has.
    """
    have = residual_block_count(arrays)
    if residual_blocks < have:
        raise ValueError(f"the network has {have} residual blocks; it cannot be deepened to {residual_blocks}")
    channels = channel_counts(width)[-1]
    random = np.random.default_rng(seed)
    deep = {path: np.asarray(value, np.float32) for path, value in arrays.items()}
    for index in range(have, residual_blocks):
        for conv in ("first", "second"):
            prefix = f"residuals/{index}/{conv}/"
            deep[prefix + "kernel"] = _he_normal(random, [3, 3, channels, channels])
            deep[prefix + "bias"] = np.zeros([channels], np.float32)
            deep[prefix + "scale"] = np.full([channels], 1.0 if conv == "first" else 0.0, np.float32)
            deep[prefix + "offset"] = np.zeros([channels], np.float32)
    return deep


def _he_normal(random: np.random.Generator, shape: list[int]) -> np.ndarray:
    """A conv kernel [k, k, C_in, C_out] of normals truncated at two deviations, deviation sqrt(2 / fan-in)."""
    deviation = np.sqrt(2.0 / (shape[0] * shape[1] * shape[2]))
    values = random.standard_normal(shape)
    while (outside := np.abs(values) > 2.0).any():
        values[outside] = random.standard_normal(int(outside.sum()))
    return (values * deviation).astype(np.float32)
