"""Finds trained feed-forward networks: bundled models, training run directories, bundle files.

A bundle is ``<name>.npz`` (the network's variables, stored as float16) beside
``<name>.json`` (``format``, ``width``, ``residual_blocks``, ``style``, the training
settings and how long it trained; files written before the block count was recorded lack
it and mean the paper's 5). A training run directory's ``model.json`` has the same fields.
A bundle's network has the residual blocks its variables hold.
Bundled models ship in ``impasto/model/bundled/``.
"""

import io
import json
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from impasto.model.errors import InvalidInputError
from impasto.model.feedforward.layout import RESIDUAL_BLOCKS, residual_block_count
from impasto.model.feedforward.noise_input import noise_channel_count
from impasto.model.feedforward.transformer import TransformerNet
from impasto.model.files import atomic_write_bytes

BUNDLED_DIR = Path(__file__).parent.parent / "bundled"  # model/bundled/
# The "format" of bundle .json and model.json files that this version reads and writes.
BUNDLE_FORMAT = "impasto-transformer/1"


def bundled_model_names() -> list[str]:
    """Names of the models that ship with impasto, sorted."""
    return sorted(path.stem for path in BUNDLED_DIR.glob("*.npz"))


def load_network(name_or_path: str | os.PathLike) -> tuple[TransformerNet, dict]:
    """Builds a trained `TransformerNet` from a bundled name, a run directory or a bundle file.

    Returns:
        (network, metadata) where metadata holds at least ``width``, ``residual_blocks`` and ``style``.

    Raises:
        InvalidInputError: nothing usable by that name.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if text in bundled_model_names():
        return _load_bundle(BUNDLED_DIR / f"{text}.npz")
    if path.is_dir():
        return _load_run_dir(path)
    if path.suffix == ".npz" and path.is_file():
        return _load_bundle(path)
    raise InvalidInputError(
        f"no model {text!r}: not a bundled model ({', '.join(bundled_model_names()) or 'none installed'}), "
        "a training run directory or a .npz bundle"
    )


def load_bundle_arrays(name_or_path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """The variables and metadata of a bundle, by bundled name or .npz path, without building a network.

    Raises:
        InvalidInputError: not a bundled name, or the files cannot be read.
    """
    text = str(name_or_path)
    path = BUNDLED_DIR / f"{text}.npz" if text in bundled_model_names() else Path(text).expanduser()
    try:
        metadata = json.loads(path.with_suffix(".json").read_text())
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"{path}: not a readable model bundle ({error})") from None
    check_format(metadata, path.with_suffix(".json"))
    return arrays, metadata


def _load_bundle(path: Path) -> tuple[TransformerNet, dict]:
    arrays, metadata = load_bundle_arrays(path)
    network = TransformerNet(width=metadata["width"], residual_blocks=residual_block_count(arrays),
                             noise_channels=noise_channel_count(arrays))
    network.load_weights_dict(arrays)
    return network, {**metadata, "residual_blocks": network.residual_blocks, "noise_channels": network.noise_channels}


def _load_run_dir(run_dir: Path) -> tuple[TransformerNet, dict]:
    metadata_path = run_dir / "model.json"
    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    if not metadata_path.is_file() or latest is None:
        raise InvalidInputError(f"{run_dir}: not a training run directory with a checkpoint (model.json, checkpoints/)")
    metadata = json.loads(metadata_path.read_text())
    check_format(metadata, metadata_path)
    metadata["residual_blocks"] = metadata.get("residual_blocks", RESIDUAL_BLOCKS)
    metadata["noise_channels"] = metadata.get("noise_channels", 0)
    network = TransformerNet(width=metadata["width"], residual_blocks=metadata["residual_blocks"],
                             noise_channels=metadata["noise_channels"])
    tf.train.Checkpoint(transformer=network).restore(latest).expect_partial()
    metadata["checkpoint"] = latest
    return network, metadata


def check_format(metadata: dict, source: Path) -> None:
    """Refuses model metadata of another format than `BUNDLE_FORMAT`, without a width, or with a residual
    block count that is not a positive whole number.

    Raises:
        InvalidInputError: naming `source`, the format found and the one expected.
    """
    found = metadata.get("format") if isinstance(metadata, dict) else None
    if found != BUNDLE_FORMAT:
        raise InvalidInputError(f"{source}: model format {found!r}; this impasto reads {BUNDLE_FORMAT!r}")
    if not isinstance(metadata.get("width"), int | float):
        raise InvalidInputError(f"{source}: no numeric \"width\" field")
    blocks = metadata.get("residual_blocks", RESIDUAL_BLOCKS)
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
        raise InvalidInputError(f"{source}: \"residual_blocks\" is {blocks!r}, not a positive whole number")


def write_bundle(network: TransformerNet, metadata: dict, path: str | os.PathLike) -> None:
    """Saves a network as ``path`` (.npz, float16) and ``path`` with .json (metadata and the format), atomically."""
    path = Path(path)
    metadata = {**metadata, "format": BUNDLE_FORMAT}
    arrays = {name: value.astype(np.float16) for name, value in network.weights_dict().items()}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(metadata, indent=2).encode())
