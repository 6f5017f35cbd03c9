"""Deepens a trained transformer by residual blocks that start close to the identity (Net2DeeperNet).

Chen et al. 2016 ("Net2Net") also grow a trained network in depth: new layers
start as (or near) the identity, so the deeper network computes what the
trained one did, and training goes on from there with more capacity. Here each
new residual block is appended after the last one (before the decoder) as a
copy of the last trained block whose closing instance norm (after its second
convolution, before the skip sum) has its scale and offset multiplied by
`NEW_BLOCK_AMPLITUDE`: the block adds a tenth of what the last one adds, with
features that are already useful, and its gradients point one way from the
first step.

Why not exactly the identity: a block whose closing scale and offset start at
zero (Goyal et al. 2017's zero-initialised last norm) computes the identity,
but its convolutions' gradients are proportional to that scale, so while the
scale hovers at zero they flip direction with its sign, and nothing pulls it
off zero. Measured on starry_night (docs/training.md, "Deeper"), such a block
still had its scale at 0.002 after 1200 steps. `amplitude=0` still gives that
exact identity.
"""

import numpy as np

from impasto.model.feedforward.layout import residual_block_count

NEW_BLOCK_AMPLITUDE = 0.1
"""A new block's closing scale and offset, as a fraction of the last trained block's."""

_CLOSING_NORM = ("second/scale", "second/offset")


def deepen_weights(arrays: dict[str, np.ndarray], residual_blocks: int,
                   amplitude: float = NEW_BLOCK_AMPLITUDE) -> dict[str, np.ndarray]:
    """`TransformerNet.weights_dict()` of the network with residual blocks appended near the identity.

    Args:
        arrays: the trained network's variables by path, e.g. ``"residuals/4/second/scale"``.
        residual_blocks: the block count wanted, at least the trained network's.
        amplitude: each new block's closing norm scale and offset, as a fraction of the last
            trained block's (0: the new blocks compute exactly the identity).

    Returns:
        float32 arrays by path: the trained ones unchanged, and each new block ``i`` a copy of
        the last trained block, ``residuals/i/second/{scale,offset}`` times `amplitude`.

    Raises:
        ValueError: `residual_blocks` is fewer than the network has, or it has none to copy.
    """
    have = residual_block_count(arrays)
    if residual_blocks < have:
        raise ValueError(f"the network has {have} residual blocks; it cannot be deepened to {residual_blocks}")
    if have == 0 and residual_blocks > 0:
        raise ValueError("the network has no residual block to copy")
    deep = {path: np.asarray(value, np.float32) for path, value in arrays.items()}
    last = f"residuals/{have - 1}/"
    copied = {path[len(last):]: deep[path] * np.float32(amplitude if path[len(last):] in _CLOSING_NORM else 1.0)
              for path in arrays if path.startswith(last)}
    for index in range(have, residual_blocks):
        deep.update({f"residuals/{index}/{suffix}": value.copy() for suffix, value in copied.items()})
    return deep
