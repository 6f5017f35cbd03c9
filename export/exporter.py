"""A trained network -> ``<models_dir>/<name>/<version>/`` for TensorFlow Serving, atomically.

A version directory holds ``saved_model.pb``, ``variables/`` and ``assets.extra/``
(``tf_serving_warmup_requests`` and ``impasto_export.json``), and with ``tflite_model`` also
``model.tflite`` (`impasto.export.tflite_model`). It is built in a
temporary directory beside it whose name starts with a dot, then renamed into place,
so a server polling ``<name>/`` for numbered versions never sees half a model. A
killed export leaves only that dot directory behind, which servers ignore.
"""

import datetime
import json
import os
import re
from pathlib import Path

import tensorflow as tf

from impasto import __version__
from impasto.export import keys
from impasto.export.options import DEFAULT_WARMUP_SIZES, GPU_TARGET
from impasto.export.signatures import ServingConfig, StylizeModule
from impasto.export.tflite_model import write_tflite_model
from impasto.export.warmup import warmed_signature, warmup_path, write_warmup_file
from impasto.model.errors import InvalidInputError
from impasto.model.feedforward.transformer import TransformerNet
from impasto.model.files import atomic_directory, pause_for_crash_test

PAUSE_ENV = "IMPASTO_EXPORT_TEST_PAUSE"
"""Crash-test hook: seconds to sleep inside the temporary directory, after it is complete and before the rename."""

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
                 warmup_sizes: tuple[tuple[int, int], ...] = DEFAULT_WARMUP_SIZES, tflite_model: bool = False) -> Path:
    """Writes one SavedModel version of `network`.

    Args:
        network: the trained transformer.
        metadata: what `impasto.model.feedforward.bundles.load_network` returned with it (style, width, ...).
        model_dir: ``<models_dir>/<name>``; its last component is the TF Serving model name.
        version: the version number; default `next_version(model_dir)`.
        config: input handling and the target (XLA or not) of the signatures.
        source: where the network came from (recorded in the metadata file).
        warmup_sizes: (height, width) of the warmup requests, one each (see `impasto.export.warmup`).
        tflite_model: also write ``model.tflite``, the network's XNNPACK form, for servers started with
            ``--prefer_tflite_model`` (CPU target only); the warmup requests then call ``stylize_tensor``.

    Returns:
        The version directory.

    Raises:
        InvalidInputError: the version is not positive or already exists, or a LiteRT model was asked
            for with the GPU target.
    """
    if tflite_model and config.target == GPU_TARGET:
        raise InvalidInputError("model.tflite is for CPU servers: export it with the cpu target")
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
            write_warmup_file(warmup_path(tmp_dir), warmup_sizes, name, warmed_signature(tflite_model))
            if tflite_model:
                write_tflite_model(network, tmp_dir)
            description = describe({**metadata, "residual_blocks": network.residual_blocks}, name, version, config,
                                   source, warmup_sizes, tflite_model)
            metadata_text = json.dumps(description, indent=2, default=str) + "\n"
            (tmp_dir / keys.ASSETS_EXTRA / keys.METADATA_FILE).write_text(metadata_text)
            pause_for_crash_test(PAUSE_ENV, tmp_dir)
    except FileExistsError:
        raise InvalidInputError(f"{final} appeared while exporting (another export?); nothing replaced") from None
    return final


def describe(metadata: dict, name: str, version: int, config: ServingConfig, source: str,
             warmup_sizes: tuple[tuple[int, int], ...], tflite_model: bool = False) -> dict:
    """The content of ``assets.extra/impasto_export.json``."""
    return {
        "model_name": name,
        "version": version,
        "style": metadata.get("style"),
        "width": metadata.get("width"),
        "residual_blocks": metadata.get("residual_blocks"),
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
        "warmup_signature": warmed_signature(tflite_model),
        "tflite_model": keys.TFLITE_MODEL_FILE if tflite_model else None,
        "warmup_buckets": sorted({config.bucket_of(*size) for size in warmup_sizes} - {None}),
        "training": metadata,
    }
