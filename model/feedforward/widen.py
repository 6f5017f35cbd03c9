"""Widens a trained transformer to a multiple of its width, computing the same function (Net2WiderNet).

Chen et al. 2016 ("Net2Net") grow a trained network by copying units: here
every hidden channel of `TransformerNet` is copied ``factor`` times, so that
a half-width bundle becomes a full-width network that stylizes exactly as the
half-width one did, and training goes on from there with the capacity of the
paper's network instead of starting over from random weights.

Why the copies compute the same function: a copied channel gets the same
incoming kernel, bias and instance-norm scale and offset, so it holds the same
values; residual sums add copies to copies; and each layer that reads the
copies splits the original kernel among them so that their sum is the
original. The split is random per kernel element (fractions that sum to one),
which breaks the copies' symmetry: their gradients differ in direction from
the first step, so they can grow apart (an even split would keep them equal
under Adam forever). No noise is added: the widened network's output equals
the original's to float32 rounding.
"""

import numpy as np

from impasto.model.feedforward.layout import channel_counts

RGB_LAYERS_IN = ("encoder/0/",)
"""Layers whose input is the RGB image, not hidden channels: their input is not widened."""
RGB_LAYERS_OUT = ("output_conv/",)
"""Layers whose output is the RGB image: their output is not widened."""


def widen_weights(arrays: dict[str, np.ndarray], factor: int, seed: int = 0,
                  split_spread: float = 0.25) -> dict[str, np.ndarray]:
    """`TransformerNet.weights_dict()` of a network `factor` times as wide, computing the same function.

    Args:
        arrays: the narrow network's variables by path, e.g. ``"encoder/1/kernel"``:
            kernels [k, k, C_in, C_out], biases, scales and offsets [C_out].
        factor: how many copies of each hidden channel (2: width 0.5 -> 1.0).
        seed: seeds the random split of each reading kernel among the copies.
        split_spread: each copy's share of a kernel element is ``1/factor`` plus a
            uniform offset of up to this fraction of ``1/factor`` (the offsets of
            an element's copies sum to zero).

    Returns:
        float32 arrays by the same paths, hidden channel counts times `factor`:
        channel ``c + k * C`` is the ``k``-th copy of channel ``c``.
    """
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"the widening factor must be a positive integer, not {factor!r}")
    random = np.random.default_rng(seed)
    wide = {}
    for path in sorted(arrays):
        value = np.asarray(arrays[path], np.float32)
        if path.endswith("/kernel"):
            if not path.startswith(RGB_LAYERS_IN):
                value = _split_inputs(value, factor, random, split_spread)
            if not path.startswith(RGB_LAYERS_OUT):
                value = np.tile(value, [1, 1, 1, factor])
        elif not path.startswith(RGB_LAYERS_OUT):  # bias, scale, offset: [C_out]
            value = np.tile(value, [factor])
        wide[path] = value
    return wide


def _split_inputs(kernel: np.ndarray, factor: int, random: np.random.Generator, spread: float) -> np.ndarray:
    """[k, k, C, O] -> [k, k, factor * C, O] whose copies' slices sum to `kernel`, shares drawn at random."""
    offsets = random.uniform(-spread, spread, size=(factor, *kernel.shape)) / factor
    shares = 1.0 / factor + offsets - offsets.mean(axis=0, keepdims=True)  # each element's shares sum to 1
    return np.concatenate([kernel * share for share in shares], axis=2).astype(np.float32)


def widening_factor(narrow_width: float, wide_width: float) -> int | None:
    """The integer copy count taking every channel count at `narrow_width` to `wide_width`'s, or None."""
    narrow, wide = channel_counts(narrow_width), channel_counts(wide_width)
    factor = wide[0] // narrow[0]
    if factor < 1 or any(w != factor * n for n, w in zip(narrow, wide, strict=True)):
        return None
    return factor
