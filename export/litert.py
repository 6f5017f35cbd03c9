"""A trained network -> LiteRT (TensorFlow Lite) files for phones and small devices, one per variant.

    DIR/NAME-float32.tflite    float32 weights and arithmetic
    DIR/NAME-float16.tflite    float16 weights (half the size), float32 arithmetic on CPU
    DIR/NAME-int8.tflite       int8 weights, dynamic-range quantization (activations quantized on the fly)
    DIR/NAME-int8-full.tflite  int8 weights and activations, ranges calibrated on photos

each beside ``NAME-VARIANT.json`` (and, but for int8-full, ``NAME-VARIANT.tiles.tflite``: the
same network in stages, for seam-free tiled runs of large images): the style, the input contract, the source's hash
and how close the variant came to the TensorFlow network on the calibration photos.

The files are converted from `ReferenceTransformer`, the plain form of the network
(same weights, tested equal to `TransformerNet`): its reflection padding, instance
norm statistics and nearest-neighbour upsampling become TFLite builtin ops, where the
fast form's gathers and fused batch norms would not convert as cleanly. Only builtin
ops are allowed (no Select TF / Flex ops), so the files run on the stock LiteRT
runtime. A variant is written only when it meets its quality bound (`litert_variants.Variant`);
otherwise the export says why and goes on with the others. Every file is written
atomically.
"""

import datetime
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from impasto import __version__
from impasto.export.litert_variants import TILING_VARIANTS, VARIANTS
from impasto.model import image_io
from impasto.model.errors import InvalidInputError
from impasto.model.feedforward.litert_network import TilingStages, equalize_norm_inputs, tflite_converter
from impasto.model.feedforward.litert_runtime import INPUT_SHAPE, LiteRTStylizer
from impasto.model.feedforward.transformer import TransformerNet
from impasto.model.files import atomic_write_bytes

FORMAT = "impasto-litert/1"

_PIXELS = {"dtype": "float32", "layout": "NHWC", "shape": list(INPUT_SHAPE), "color": "RGB", "range": [0, 255]}
"""The pixel contract of every file's input and output, as the side file states it."""

CALIBRATION_LONG_SIDE = 256
"""Calibration and check photos are resized to this long side."""


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio of `image` against `reference` (same shape, [0, 255]), in dB."""
    error = np.mean(np.square(np.asarray(image, np.float64) - np.asarray(reference, np.float64)))
    return float("inf") if error == 0 else float(10.0 * np.log10(255.0 ** 2 / error))


def convert(network: TransformerNet, variant: str, calibration_images: Sequence[np.ndarray] = ()) -> bytes:
    """One variant of the network as a ``.tflite`` flatbuffer (builtin ops only).

    Args:
        network: the trained transformer.
        variant: a key of `VARIANTS`.
        calibration_images: float32 [H, W, 3] in [0, 255] each; needed for ``int8-full``.
    """
    if variant not in VARIANTS:
        raise InvalidInputError(f"unknown LiteRT variant {variant!r}; choose from {', '.join(VARIANTS)}")
    weights = network.weights_dict()
    if variant == "int8-full":  # The same function, its norms' inputs on one scale (see equalize_norm_inputs).
        if not calibration_images:
            raise InvalidInputError("int8-full needs calibration photos")
        weights = equalize_norm_inputs(weights, calibration_images)
    converter = tflite_converter(weights)
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8-full":
        converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in calibration_images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def operator_names(model: bytes) -> set[str]:
    """The operators a ``.tflite`` flatbuffer uses: builtin names (``CONV_2D``), ``CUSTOM:name`` otherwise
    (Select TF ops appear as ``CUSTOM:Flex...``)."""
    from ai_edge_litert import schema_py_generated as schema

    builtin_names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    names = set()
    for code in schema.ModelT.InitFromPackedBuf(model, 0).operatorCodes:
        # Codes past 127 live in builtinCode only; deprecatedBuiltinCode saturates at 127.
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin == schema.BuiltinOperator.CUSTOM:
            names.add(f"CUSTOM:{code.customCode.decode()}")
        else:
            names.add(builtin_names[builtin])
    return names


def load_calibration_photos(directory: str | os.PathLike, long_side: int = CALIBRATION_LONG_SIDE) -> list[np.ndarray]:
    """Every photo in `directory` (.jpg, .jpeg, .png, .webp), resized to `long_side`, sorted by name.

    Raises:
        InvalidInputError: not a directory, no photo in it, or an unreadable one.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InvalidInputError(f"--calibration-photos {directory}: not a directory")
    paths = sorted(path for path in directory.iterdir() if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    if not paths:
        raise InvalidInputError(f"--calibration-photos {directory}: no .jpg, .png or .webp photos in it")
    return [image_io.resize_long_side(image_io.load_image(path), long_side) for path in paths]


def compare_with_network(model_path: str | os.PathLike, images: Sequence[np.ndarray],
                         expected: Sequence[np.ndarray]) -> dict:
    """Runs a ``.tflite`` file in LiteRT on `images` and compares the results with `expected`.

    Args:
        images: float32 [H, W, 3] in [0, 255] each.
        expected: the TensorFlow network's output for each, the same shapes.

    Returns:
        ``{"psnr_db": ..., "mean_abs_error": ...}`` over all the images' pixels (levels of 255).
    """
    stylizer = LiteRTStylizer(model_path)
    converted = np.concatenate([stylizer.run(image).ravel() for image in images])
    expected = np.concatenate([image.ravel() for image in expected])
    return {"psnr_db": round(psnr(converted, expected), 2),
            "mean_abs_error": round(float(np.mean(np.abs(converted - expected))), 4)}


def weights_digest(network: TransformerNet) -> str:
    """sha256 of the network's weights as float32, in name order: identifies the source model's weights."""
    digest = hashlib.sha256()
    for name, value in sorted(network.weights_dict().items()):
        digest.update(name.encode() + b"\0" + np.ascontiguousarray(value, np.float32).tobytes())
    return digest.hexdigest()


def export_litert(network: TransformerNet, metadata: dict, out_dir: str | os.PathLike, name: str,
                  variants: Sequence[str], calibration_images: Sequence[np.ndarray], source: str = "",
                  report=print) -> dict[str, dict]:
    """Converts, checks and writes each variant: ``out_dir/name-VARIANT.tflite`` and ``.json``.

    Args:
        network: the trained transformer.
        metadata: what `impasto.model.feedforward.bundles.load_network` returned with it (style, width).
        name: the files' name stem.
        variants: keys of `VARIANTS`.
        calibration_images: float32 [H, W, 3] in [0, 255]: int8-full's calibration set, and
            the photos every variant is compared with the TensorFlow network on.
        source: where the network came from (recorded).
        report: takes one line of progress per variant.

    Returns:
        The side file's contents by variant, including those not written (``"written": False``
        and ``"reason"``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = weights_digest(network)
    expected = [network(image[None])[0].numpy() for image in calibration_images]
    results = {}
    for variant_name in variants:
        variant = VARIANTS[variant_name]
        model = convert(network, variant_name, calibration_images)
        operators = operator_names(model)
        not_builtin = sorted(op for op in operators if op.startswith("CUSTOM:"))
        if not_builtin:
            raise RuntimeError(f"{variant_name}: the converter emitted non-builtin ops {not_builtin}")
        model_path = out_dir / f"{name}-{variant_name}.tflite"
        staging = out_dir / f".{name}-{variant_name}.check.tflite"
        try:
            atomic_write_bytes(staging, model)
            check = compare_with_network(staging, calibration_images, expected)
        finally:
            staging.unlink(missing_ok=True)
        side = {
            "format": FORMAT, "style": metadata.get("style", name), "variant": variant_name,
            "description": variant.description, "file": model_path.name, "bytes": len(model),
            "sha256": hashlib.sha256(model).hexdigest(),
            "input": {**_PIXELS, "sizes": "any height and width (resize the input tensor)"},
            "output": {**_PIXELS, "sizes": "the input's"},
            "operators": sorted(operators),
            "source": source, "source_weights_sha256": digest, "width": metadata.get("width"),
            "residual_blocks": network.residual_blocks,
            "check": {**check, "bound": variant.bound(), "photos": len(calibration_images),
                      "long_side": max(calibration_images[0].shape[:2]) if calibration_images else None},
            "impasto_version": __version__,
            "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        side["written"] = variant.meets_bound(check)
        if side["written"] and variant_name in TILING_VARIANTS:
            tiles_path = model_path.with_suffix(".tiles.tflite")
            tiles_model = convert_tiling_stages(network, variant_name)
            atomic_write_bytes(tiles_path, tiles_model)
            side["tiling_stages"] = {"file": tiles_path.name, "bytes": len(tiles_model),
                                     "sha256": hashlib.sha256(tiles_model).hexdigest()}
        if side["written"]:
            atomic_write_bytes(model_path, model)
            atomic_write_bytes(model_path.with_suffix(".json"), json.dumps(side, indent=2).encode())
            report(f"wrote {model_path} ({len(model) / 1e6:.2f} MB; PSNR {check['psnr_db']} dB, mean error "
                   f"{check['mean_abs_error']} against the TensorFlow network)")
        else:
            side["reason"] = (f"PSNR {check['psnr_db']} dB, mean error {check['mean_abs_error']} against the "
                              f"TensorFlow network on the calibration photos misses the bound {variant.bound()}")
            report(f"not written: {model_path.name}: {side['reason']}")
            # An earlier export's files of this variant would mislead: remove them.
            for stale in (model_path, model_path.with_suffix(".json"), model_path.with_suffix(".tiles.tflite")):
                if stale.exists():
                    stale.unlink()
                    report(f"removed {stale}, from an earlier export")
        results[variant_name] = side
    return results


def convert_tiling_stages(network: TransformerNet, variant: str) -> bytes:
    """The network's `TilingStages` as one ``.tflite`` flatbuffer with a signature per stage (builtin ops
    only), for tiled runs of large images (`impasto.model.feedforward.litert_tiling`); `variant` as in
    `convert`, except int8-full."""
    if variant not in TILING_VARIANTS:
        raise InvalidInputError(f"no tiling stages for LiteRT variant {variant!r}")
    stages = TilingStages(network.weights_dict())
    with tempfile.TemporaryDirectory() as directory:
        tf.saved_model.save(stages, directory, signatures=stages.signatures())
        converter = tf.lite.TFLiteConverter.from_saved_model(directory)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if variant != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant == "float16":
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()
