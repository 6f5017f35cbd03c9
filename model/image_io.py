"""Decoding, validation, resizing and encoding of images under one contract.

The pixel contract, used at every boundary in impasto:

    float32, RGB, values in [0, 255], NHWC for batches and HWC for one image.

Files and request bytes enter through `decode_image_bytes` / `load_image`,
which accept JPEG (baseline, progressive, CMYK), PNG (8- and 16-bit, grey,
palette, RGBA), GIF (first frame), BMP and WebP, flatten transparency onto
white and refuse anything else with `InvalidInputError`. Sizes are checked
from the header before any pixel is decoded, so a decompression bomb costs
no memory.
"""

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from impasto.model.errors import InvalidInputError
from impasto.model.files import atomic_write_bytes

PIXEL_RANGE = (0.0, 255.0)
"""The values a pixel channel takes under the contract, (low, high)."""

DEFAULT_MAX_PIXELS = 64 * 1024 * 1024
"""Largest image, in pixels, that impasto decodes unless told otherwise (8192 x 8192)."""

ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")
_ENCODE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}

# impasto checks sizes itself, before decoding; Pillow's own bomb guard would
# otherwise refuse large but legitimate images with its default limit.
Image.MAX_IMAGE_PIXELS = None


def _open_checked(data: bytes, max_pixels: int, what: str) -> Image.Image:
    """Opens encoded bytes, reading the header only, and checks format and claimed size."""
    if not data:
        raise InvalidInputError(f"{what}: empty input (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
    except Exception as error:  # Pillow raises several unrelated types here.
        raise InvalidInputError(f"{what}: not a recognised image ({type(error).__name__})") from None
    width, height = image.size
    problem = None
    if image.format not in ACCEPTED_FORMATS:
        problem = f"unsupported image format {image.format}"
    elif width < 1 or height < 1:
        problem = f"image has no pixels ({width}x{height})"
    elif width * height > max_pixels:
        problem = f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} pixels"
    if problem:
        image.close()
        raise InvalidInputError(f"{what}: {problem}")
    return image


def check_image_header(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, what: str = "image") -> tuple[int, int]:
    """Reads an encoded image's header, decoding no pixel, and checks it as `decode_image_bytes` would.

    Returns:
        (width, height) as the header claims them.

    Raises:
        InvalidInputError: empty, unrecognised, or more pixels than `max_pixels`.
    """
    with _open_checked(data, max_pixels, what) as image:
        return image.size


def decode_image_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, what: str = "image") -> np.ndarray:
    """Decodes encoded image bytes into the pixel contract.

    Args:
        data: the encoded file contents.
        max_pixels: refuse images with more pixels than this, read from the header.
        what: how error messages name this input (a file name, a request field).

    Returns:
        float32 array [H, W, 3], RGB, values in [0, 255].

    Raises:
        InvalidInputError: empty, truncated, unrecognised or too large input.
    """
    with _open_checked(data, max_pixels, what) as image:
        try:
            image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb_float(image)
        except InvalidInputError:
            raise
        except Exception as error:
            raise InvalidInputError(f"{what}: corrupt or truncated image data ({error})") from None


def _to_rgb_float(image: Image.Image) -> np.ndarray:
    """Converts any decoded Pillow mode to float32 RGB [0, 255], flattening alpha onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode != "I" or values.max() > 255 else 255.0
        grey = np.clip(values * (255.0 / top), 0.0, 255.0).astype(np.float32)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float32), 0.0, 255.0)
        return np.repeat(grey[:, :, None], 3, axis=2)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[:, :, 3:4] / 255.0
        return rgba[:, :, :3] * alpha + 255.0 * (1.0 - alpha)
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Reads and decodes an image file; returns float32 [H, W, 3] in [0, 255].

    Raises:
        InvalidInputError: the file is missing, unreadable or not an accepted image.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{path}: is a directory, not an image file") from None
    except OSError as error:
        raise InvalidInputError(f"{path}: cannot read ({error.strerror})") from None
    return decode_image_bytes(data, max_pixels=max_pixels, what=str(path))


def scaled_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """Returns (height, width) scaled so the longer side is `long_side`, each at least 1."""
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resizes a float32 [H, W, 3] image with an antialiased Lanczos filter (Pillow, per channel)."""
    if image.shape[:2] == (height, width):
        return image.astype(np.float32, copy=False)
    channels = [
        np.asarray(Image.fromarray(image[:, :, c].astype(np.float32), mode="F").resize((width, height), Image.LANCZOS))
        for c in range(image.shape[2])
    ]
    return np.clip(np.stack(channels, axis=2), 0.0, 255.0).astype(np.float32)


def resize_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """Resizes a float32 [H, W, 3] image so its longer side is `long_side` pixels."""
    return resize_image(image, *scaled_size(image.shape[0], image.shape[1], long_side))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Rounds and clips a float image in [0, 255] to uint8."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def encode_image(image: np.ndarray, format_name: str = "PNG") -> bytes:
    """Encodes a float32 [H, W, 3] image in [0, 255] as PNG (default), JPEG, WebP or BMP bytes."""
    buffer = io.BytesIO()
    options = {"quality": 95} if format_name in ("JPEG", "WEBP") else {}
    Image.fromarray(to_uint8(image), mode="RGB").save(buffer, format=format_name, **options)
    return buffer.getvalue()


def output_format(path: str | os.PathLike) -> str:
    """Returns the Pillow format name for an output path, from its extension.

    Raises:
        InvalidInputError: the extension is not one impasto writes.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in _ENCODE_FORMATS:
        raise InvalidInputError(
            f"{path}: unsupported output extension {suffix!r}; use one of {sorted(_ENCODE_FORMATS)}")
    return _ENCODE_FORMATS[suffix]


def save_image(image: np.ndarray, path: str | os.PathLike) -> None:
    """Encodes by the path's extension and writes atomically (temporary file + rename)."""
    atomic_write_bytes(path, encode_image(image, output_format(path)))
