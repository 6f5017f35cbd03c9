"""Stylizers that `impasto batch` runs: a bundled model, a training run, a .npz bundle or an exported SavedModel.

Every one has the same call: float32 [N, H, W, 3] in [0, 255] -> the same shape,
one same-size batch at a time.
"""

from pathlib import Path

import numpy as np
import tensorflow as tf

from impasto.export import keys
from impasto.export.exporter import version_numbers
from impasto.model.feedforward import engines
from impasto.model.feedforward.bundles import load_network
from impasto.model.feedforward.stylizer import FastStylizer


class SavedModelStylizer:
    """An exported SavedModel's ``stylize_tensor`` signature (buckets and tiling as exported).

    Args:
        version_dir: a version directory (holding saved_model.pb).
    """

    def __init__(self, version_dir: Path):
        self.path = version_dir
        self._loaded = tf.saved_model.load(str(version_dir))
        self._signature = self._loaded.signatures[keys.STYLIZE_TENSOR]

    def stylize_batch(self, images: np.ndarray) -> np.ndarray:
        """float32 [N, H, W, 3] in [0, 255] -> float32 [N, H, W, 3] in [0, 255]."""
        outputs = self._signature(**{keys.IMAGES: tf.constant(images, tf.float32)})
        return outputs[keys.STYLIZED_IMAGES].numpy()


class NetworkStylizer:
    """A trained network run as `impasto stylize --method fast` runs it: the same tiling defaults, and the
    engine the worker's CPU runs fastest (`impasto.model.feedforward.engines`, measured once per CPU, cached)."""

    def __init__(self, name_or_path: str):
        network, self.metadata = load_network(name_or_path)
        self._stylizer = FastStylizer(network, engine=engines.AUTO)

    def stylize_batch(self, images: np.ndarray) -> np.ndarray:
        """float32 [N, H, W, 3] in [0, 255] -> float32 [N, H, W, 3] in [0, 255]."""
        return self._stylizer.stylize_batch(images).numpy()


def saved_model_version(path: Path) -> Path | None:
    """The SavedModel version directory `path` names (itself, or its highest numbered version), or None."""
    if (path / "saved_model.pb").is_file():
        return path
    versions = [number for number in version_numbers(path) if (path / str(number) / "saved_model.pb").is_file()]
    return path / str(versions[-1]) if versions else None


def load_stylizer(name_or_path: str) -> SavedModelStylizer | NetworkStylizer:
    """Loads what --model names: an exported SavedModel directory, or anything `load_network` accepts.

    Raises:
        InvalidInputError: nothing usable by that name.
    """
    path = Path(name_or_path).expanduser()
    version_dir = saved_model_version(path) if path.is_dir() else None
    if version_dir is not None:
        return SavedModelStylizer(version_dir)
    return NetworkStylizer(name_or_path)
