"""Property-based checks of the decode-and-validate path: arbitrary bytes give an image or InvalidInputError."""

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from impasto.model import image_io
from impasto.model.errors import InvalidInputError

from conftest import DATA_DIR

_VALID_FILES = [p.read_bytes() for p in [*sorted(DATA_DIR.glob("*.png"))[:4], DATA_DIR / "edge_cmyk.jpg"]]


def _decode_or_refuse(data: bytes) -> None:
    try:
        image = image_io.decode_image_bytes(data, max_pixels=4_000_000)
    except InvalidInputError as error:
        assert str(error)
        return
    assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3
    assert np.all(np.isfinite(image)) and image.min() >= 0.0 and image.max() <= 255.0


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_crash(data):
    _decode_or_refuse(data)


@settings(max_examples=200, deadline=2000)
@given(st.sampled_from(_VALID_FILES), st.integers(min_value=0, max_value=10_000), st.integers(0, 255), st.booleans())
def test_corrupted_real_images_never_crash(original, position, value, truncate):
    data = bytearray(original)
    position %= len(data)
    if truncate:
        del data[position:]
    else:
        data[position] = value
    _decode_or_refuse(bytes(data))


@settings(max_examples=60, deadline=3000)
@given(st.integers(1, 64), st.integers(1, 64), st.sampled_from(["L", "RGB", "RGBA", "P", "I;16", "CMYK", "LA"]),
       st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "WEBP"]))
def test_every_mode_and_format_decodes_to_the_contract(width, height, mode, format_name):
    rng = np.random.default_rng(width * 100 + height)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB").convert(mode)
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=format_name)
    except (OSError, ValueError, KeyError):
        return  # Pillow cannot write this mode in this format; nothing to decode.
    decoded = image_io.decode_image_bytes(buffer.getvalue())
    assert decoded.shape == (height, width, 3) and decoded.dtype == np.float32
    assert decoded.min() >= 0.0 and decoded.max() <= 255.0
