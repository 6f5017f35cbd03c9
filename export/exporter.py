"""A trained network -> ``<models_dir>/<name>/<version>/`` for TensorFlow Serving, atomically.

A version directory holds ``saved_model.pb``, ``variables/`` and ``assets.extra/``
(``tf_serving_warmup_requests`` and ``impasto_export.json``). It is built in a
temporary directory beside it whose name starts with a dot, then renamed into place,
so a server polling ``<name>/`` for numbered versions never sees half a model. A
killed export leaves only that dot directory behind, which servers ignore.
"""

import datetime
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from impasto import __version__
from impasto.export import keys
from impasto.export.signatures import ServingConfig, StylizeModule
from impasto.export.warmup import DEFAULT_WARMUP_SIZES, warmup_path, write_warmup_file
from impasto.model.errors import InvalidInputError
from impasto.model.files import atomic_directory
from impasto.model.transformer import TransformerNet

PAUSE_ENV = "IMPASTO_EXPORT_TEST_PAUSE"
"""Test-only: seconds to sleep inside the temporary directory, after it is complete and before the rename."""

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def check_model_name(name: str) -> str:
    """Returns `name` if it can be a model directory and a TF Serving model name.

    Raises:
        InvalidInputError: empty, too long, or characters other than letters, digits, ``_.-``.
    """
    if not _MODEL_NAME.fullmatch(name):
        raise InvalidInputError(
            f"model name {name!r}: use letters, digits, '_', '.', '-' (starting with a letter or digit)")
    return name


def version_numbers(model_dir: str | os.PathLike) -> list[int]:
    """The numbered version directories under `model_dir`, ascending (dot-named temporaries are not versions)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(child.name) for child in model_dir.iterdir() if child.name.isdigit() and child.is_dir())


def next_version(model_dir: str | os.PathLike) -> int:
    """One more than the highest existing version, or 1."""
    return max(version_numbers(model_dir), default=0) + 1


def export_model(network: TransformerNet, metadata: dict, model_dir: str | os.PathLike, version: int | None = None,
                 config: ServingConfig = ServingConfig(), source: str = "",
                 warmup_sizes: tuple[tuple[int, int], ...] = DEFAULT_WARMUP_SIZES) -> Path:
    """Writes one SavedModel version of `network`.

    Args:
        network: the trained transformer.
        metadata: what `impasto.model.library.load_network` returned with it (style, width, ...).
        model_dir: ``<models_dir>/<name>``; its last component is the TF Serving model name.
        version: the version number; default `next_version(model_dir)`.
        config: input handling and the target (XLA or not) of the signatures.
        source: where the network came from (recorded in the metadata file).
        warmup_sizes: (height, width) of the warmup requests, one each (see `impasto.export.warmup`).

    Returns:
        The version directory.

    Raises:
        InvalidInputError: the version is not positive or already exists.
    """
    model_dir = Path(model_dir)
    name = check_model_name(model_dir.name)
    version = next_version(model_dir) if version is None else version
    if version < 1:
        raise InvalidInputError(f"version must be a positive integer, not {version}")
    final = model_dir / str(version)
    if final.exists():
        raise InvalidInputError(f"{final} already exists; pick another --version or leave it out for the next one")
    module = StylizeModule(network, config)
    try:
        with atomic_directory(final) as tmp_dir:
            tf.saved_model.save(module.saved_root(), str(tmp_dir), signatures=module.signatures())
            write_warmup_file(warmup_path(tmp_dir), warmup_sizes, name)
            description = describe(metadata, name, version, config, source, warmup_sizes)
            metadata_text = json.dumps(description, indent=2, default=str) + "\n"
            (tmp_dir / keys.ASSETS_EXTRA / keys.METADATA_FILE).write_text(metadata_text)
            _pause_for_tests(tmp_dir)
    except FileExistsError:
        raise InvalidInputError(f"{final} appeared while exporting (another export?); nothing replaced") from None
    return final


def describe(metadata: dict, name: str, version: int, config: ServingConfig, source: str,
             warmup_sizes: tuple[tuple[int, int], ...]) -> dict:
    """The content of ``assets.extra/impasto_export.json``."""
    return {
        "model_name": name,
        "version": version,
        "style": metadata.get("style"),
        "width": metadata.get("width"),
        "source": source,
        "impasto_version": __version__,
        "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "signatures": list(keys.SIGNATURES),
        "target": config.target,
        "xla": config.jit_compile,
        "max_side": config.max_side,
        "max_pixels": config.max_pixels,
        "bucket_sides": list(config.bucket_sides),
        "tile_pixels": config.tile_pixels,
        "tile_size": config.tile_size,
        "buckets": [list(bucket) for bucket in config.buckets],
        "warmup_sizes": [list(size) for size in warmup_sizes],
        "warmup_buckets": sorted({config.bucket_of(*size) for size in warmup_sizes} - {None}),
        "training": metadata,
    }


def _pause_for_tests(tmp_dir: Path) -> None:
    seconds = os.environ.get(PAUSE_ENV)
    if seconds:
        print(f"{PAUSE_ENV}: pausing {seconds} s in {tmp_dir}", file=sys.stderr, flush=True)
        time.sleep(float(seconds))


def compare_with_reload(module: StylizeModule, export_dir: str | os.PathLike, image_bytes: list[bytes]) -> dict:
    """Reloads an export and runs every signature beside the in-memory module on the same inputs.

    Args:
        module: the in-memory module the export was made from (or an equivalent one).
        export_dir: the version directory.
        image_bytes: encoded images, any sizes; the tensor signature gets the first one.

    Returns:
        {signature name: max abs difference}, in 8-bit levels of the decoded PNGs for
        the byte signatures and in float [0, 255] units for stylize_tensor;
        infinity where an output's shape differs.
    """
    loaded = tf.saved_model.load(str(export_dir))
    batch = tf.constant(image_bytes)
    count = len(image_bytes)
    first = tf.io.decode_image(image_bytes[0], channels=3, expand_animations=False)
    inputs = {
        keys.SERVING_DEFAULT: {keys.IMAGE_BYTES: batch},
        keys.SERVING_NOXLA: {keys.IMAGE_BYTES: batch},
        keys.STYLIZE_CONTROLS: {keys.IMAGE_BYTES: batch,
                                keys.STRENGTH: tf.linspace(1.0, 0.25, count),
                                keys.PRESERVE_COLOR: tf.constant([i % 2 == 1 for i in range(count)])},
        keys.STYLIZE_TENSOR: {keys.IMAGES: tf.cast(first, tf.float32)[None]},
    }
    differences = {}
    for name, arguments in inputs.items():
        expected = getattr(module, name)(**arguments)
        reloaded = loaded.signatures[name](**arguments)
        output_key = keys.SIGNATURES[name].outputs[0].key
        if name == keys.STYLIZE_TENSOR:
            pairs = [(expected[output_key].numpy(), reloaded[output_key].numpy())]
        else:
            pairs = [(_png_pixels(a), _png_pixels(b)) for a, b in zip(expected[output_key].numpy(),
                                                                      reloaded[output_key].numpy())]
        differences[name] = max(_max_difference(a, b) for a, b in pairs)
    return differences


def _png_pixels(data: bytes) -> np.ndarray:
    return tf.io.decode_png(data).numpy().astype(np.float64)


def _max_difference(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))
