"""Decoding, validation and encoding under the pixel contract, on the edge-case files."""

import io
import resource

import numpy as np
import pytest
from PIL import Image

from impasto.model import image_io
from impasto.model.errors import InvalidInputError

STYLIZABLE = ["edge_grayscale.png", "edge_rgba.png", "edge_16bit.png", "edge_1x1.png", "edge_cmyk.jpg",
              "edge_progressive.jpg", "edge_animated.gif"]
REFUSED = {
    "edge_truncated.jpg": "truncated",
    "edge_random_bytes.jpg": "not a recognised image",
    "edge_empty.jpg": "empty",
    "edge_bomb_30000.png": "30000x30000",
}


@pytest.mark.parametrize("name", STYLIZABLE)
def test_accepted_edge_cases_decode_to_the_contract(data_dir, name):
    image = image_io.load_image(data_dir / name)
    assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3
    assert image.min() >= 0.0 and image.max() <= 255.0


@pytest.mark.parametrize("name,reason", sorted(REFUSED.items()))
def test_refused_edge_cases_name_the_problem(data_dir, name, reason):
    with pytest.raises(InvalidInputError, match=reason):
        image_io.load_image(data_dir / name)


def test_bomb_is_refused_from_its_header_without_allocating(data_dir):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InvalidInputError, match="exceeds the limit"):
        image_io.decode_image_bytes((data_dir / "edge_bomb_30000.png").read_bytes())
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 100 * 1024  # The decoded bomb would be 900 MB.


def test_16bit_png_keeps_its_tonal_range(data_dir):
    image = image_io.load_image(data_dir / "edge_16bit.png")
    # A naive 16-to-8-bit conversion saturates almost everything to 255.
    assert np.mean(image >= 254.5) < 0.5
    assert image.max() - image.min() > 200


def test_transparency_is_flattened_onto_white(data_dir):
    rgba = np.asarray(Image.open(data_dir / "edge_rgba.png"))
    image = image_io.load_image(data_dir / "edge_rgba.png")
    transparent = rgba[:, :, 3] == 0
    assert transparent.any()
    np.testing.assert_allclose(image[transparent], 255.0)


def test_cmyk_jpeg_looks_like_the_rgb_photo(data_dir):
    cmyk = image_io.load_image(data_dir / "edge_cmyk.jpg")
    reference = image_io.resize_image(image_io.load_image(data_dir / "chelsea.png"), *cmyk.shape[:2])
    assert np.abs(cmyk - reference).mean() < 12.0  # An inverted CMYK decode would be ~100 off.


def test_animated_gif_gives_its_first_frame(data_dir):
    gif = Image.open(data_dir / "edge_animated.gif")
    first = np.asarray(gif.convert("RGB"), dtype=np.float32)
    np.testing.assert_array_equal(image_io.load_image(data_dir / "edge_animated.gif"), first)


def test_pixel_limit_is_configurable(data_dir):
    with pytest.raises(InvalidInputError, match="exceeds the limit of 100 pixels"):
        image_io.load_image(data_dir / "chelsea.png", max_pixels=100)


def test_missing_file_and_directory_are_input_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="no such file"):
        image_io.load_image(tmp_path / "missing.png")
    with pytest.raises(InvalidInputError, match="directory"):
        image_io.load_image(tmp_path)


def test_png_round_trip_is_exact_for_integer_pixels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (17, 23, 3)).astype(np.float32)
    decoded = image_io.decode_image_bytes(image_io.encode_image(image))
    np.testing.assert_array_equal(decoded, image)


def test_encoding_rounds_and_clips():
    image = np.array([[[-5.0, 127.6, 300.0]]], dtype=np.float32)
    decoded = np.asarray(Image.open(io.BytesIO(image_io.encode_image(image))))
    assert decoded.tolist() == [[[0, 128, 255]]]


def test_resize_long_side_keeps_aspect_and_range(data_dir):
    image = image_io.load_image(data_dir / "koala.png")  # 96 x 128 portrait
    resized = image_io.resize_long_side(image, 64)
    assert resized.shape == (64, 48, 3)
    assert resized.min() >= 0.0 and resized.max() <= 255.0


def test_save_is_atomic_and_refuses_unknown_extensions(tmp_path):
    image = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(InvalidInputError, match="unsupported output extension"):
        image_io.save_image(image, tmp_path / "out.txt")
    image_io.save_image(image, tmp_path / "out.jpg")
    assert [p.name for p in tmp_path.iterdir()] == ["out.jpg"]  # No temporary file left behind.
    assert Image.open(tmp_path / "out.jpg").format == "JPEG"


def test_written_files_follow_the_umask_not_mkstemp(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        image_io.save_image(np.zeros((2, 2, 3), np.float32), tmp_path / "out.png")
    finally:
        os.umask(old)
    assert (tmp_path / "out.png").stat().st_mode & 0o777 == 0o644
