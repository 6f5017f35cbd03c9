"""The in-memory serving module: decoding, size buckets, per-image sizes, controls, refusals."""

import io
import struct
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from impasto.export import keys
from impasto.export.signatures import ServingConfig, StylizeModule, claimed_pixels, decode
from impasto.model import color, image_io
from impasto.model.errors import InvalidInputError
from impasto.model.feedforward.stylizer import FastStylizer
from impasto.model.tiling import Tiling

from conftest import DATA_DIR, load_test_image


def _png(image: np.ndarray) -> bytes:
    return image_io.encode_image(image, "PNG")


def _pixels(png: bytes) -> np.ndarray:
    return tf.io.decode_png(png).numpy().astype(np.float64)


def _photo(height: int, width: int, name: str = "chelsea.png") -> np.ndarray:
    """A test photo resized to height x width and rounded to integers (as after a PNG round trip)."""
    return np.rint(image_io.resize_image(load_test_image(name), height, width))


def _bucket_oracle(network, image: np.ndarray, bucket: tuple[int, int]) -> np.ndarray:
    """What the module should compute however it pads to `bucket`: the bare network at the image's own size."""
    assert image.shape[0] <= bucket[0] and image.shape[1] <= bucket[1]
    return np.clip(network(image[None].astype(np.float32))[0].numpy(), 0.0, 255.0)


def _padded_without_region(network, image: np.ndarray, bucket: tuple[int, int]) -> np.ndarray:
    """Mirror padding and the bare network on the padded image: statistics and edges see the padding."""
    height, width = image.shape[:2]
    padded = np.pad(image, ((0, bucket[0] - height), (0, bucket[1] - width), (0, 0)), mode="symmetric")
    return network(padded[None].astype(np.float32))[0, :height, :width].numpy()


def test_buckets_follow_the_ladder_up_to_max_side():
    assert ServingConfig().bucket_sides == (256, 384, 512, 768, 1024, 1536, 2048)
    assert ServingConfig(max_side=1000).bucket_sides == (256, 384, 512, 768, 1000)
    assert ServingConfig(max_side=130, ladder=(64,)).bucket_sides == (64, 132)
    assert len(ServingConfig(max_side=512).buckets) == 9
    for bad in ({"max_side": 8}, {"ladder": (64, 32)}, {"ladder": (66,)}, {"max_pixels": 0}, {"tile_size": 30}):
        with pytest.raises(InvalidInputError):
            ServingConfig(**bad)


def _gif_header(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00" * 8


def _bmp_header(width: int, height: int) -> bytes:
    return b"BM" + b"\x00" * 16 + struct.pack("<ii", width, height) + b"\x00" * 8


def _jpeg_claiming(height: int, width: int) -> bytes:
    """A real small JPEG whose SOF0 marker is patched to claim another size."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 150)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_header_sizes_are_read_without_decoding():
    chelsea = (DATA_DIR / "chelsea.png").read_bytes()
    cases = {
        chelsea: 85 * 128,
        (DATA_DIR / "edge_bomb_30000.png").read_bytes(): 30000 * 30000,
        (DATA_DIR / "edge_progressive.jpg").read_bytes(): 171 * 256,
        (DATA_DIR / "edge_animated.gif").read_bytes(): 85 * 128,
        _jpeg_claiming(30000, 20000): 30000 * 20000,
        _gif_header(65535, 65535): 65535 * 65535,
        _bmp_header(40000, -30000): 40000 * 30000,
        b"": 0,
        b"not an image": 0,
        chelsea[:10]: 0,
    }
    for data, pixels in cases.items():
        assert int(claimed_pixels(tf.constant(data))) == pixels, data[:12]


@pytest.mark.parametrize("name", ["chelsea.png", "edge_rgba.png", "edge_grayscale.png", "edge_16bit.png",
                                  "edge_animated.gif", "edge_1x1.png", "edge_cmyk.jpg", "edge_progressive.jpg"])
def test_decoding_agrees_with_image_io(name):
    data = (DATA_DIR / name).read_bytes()
    decoded = decode(tf.constant(data), image_io.DEFAULT_MAX_PIXELS).numpy()
    # Same pixels to the 8-bit level: alpha onto white, 16-bit scaling, CMYK, accurate JPEG DCT, GIF frame 0.
    np.testing.assert_array_equal(np.rint(decoded), np.rint(image_io.decode_image_bytes(data)))


def test_bmp_decodes_exactly():
    image = _photo(40, 56)
    buffer = io.BytesIO()
    Image.fromarray(image.astype(np.uint8)).save(buffer, "BMP")
    np.testing.assert_array_equal(decode(tf.constant(buffer.getvalue()), 10**6).numpy(), image)


def test_a_batch_of_different_sizes_keeps_each_size(export_module):
    sizes = [(85, 128), (1, 1), (128, 96), (40, 56), (150, 200)]  # The last is larger than max_side 128.
    batch = [_png(_photo(h, w)) for h, w in sizes]
    outputs = export_module.serving_default(tf.constant(batch))[keys.STYLIZED_IMAGE_BYTES].numpy()
    assert [_pixels(o).shape for o in outputs] == [(h, w, 3) for h, w in sizes]
    plain = export_module.serving_noxla(tf.constant(batch))[keys.STYLIZED_IMAGE_BYTES].numpy()
    # XLA and the plain network agree up to float rounding, which can flip a level.
    assert max(np.abs(_pixels(a) - _pixels(b)).max() for a, b in zip(outputs, plain)) <= 1


def test_bucket_padding_does_not_change_the_result(export_module, export_network):
    """Padded to a bucket, an image comes out as the network gives it at its own size (statistics taken
    over the image only, padding at its real edges); the padding alone would shift every pixel."""
    images = [_photo(40, 56), _photo(85, 128, "koala.png")]
    outputs = export_module.serving_default(tf.constant([_png(i) for i in images]))[keys.STYLIZED_IMAGE_BYTES]
    for image, output, bucket in zip(images, outputs.numpy(), [(64, 64), (128, 128)]):
        expected = _bucket_oracle(export_network, image, bucket)
        assert np.abs(_pixels(output) - np.rint(expected)).max() <= 1
        assert np.abs(_padded_without_region(export_network, image, bucket) - expected).mean() > 1.0


def test_stylize_tensor_matches_the_bare_network_at_bucket_sizes(export_module, export_network):
    images = np.stack([_photo(64, 128), _photo(64, 128, "rocket.png")]).astype(np.float32)
    stylized = export_module.stylize_tensor(tf.constant(images))[keys.STYLIZED_IMAGES].numpy()
    assert stylized.shape == images.shape
    np.testing.assert_allclose(stylized, export_network(images).numpy(), atol=0.05)


def test_stylize_tensor_keeps_the_size_of_large_inputs(export_module, export_network):
    images = np.random.default_rng(0).uniform(0, 255, (2, 150, 260, 3)).astype(np.float32)
    stylized = export_module.stylize_tensor(tf.constant(images))[keys.STYLIZED_IMAGES].numpy()
    assert stylized.shape == images.shape and stylized.min() >= 0 and stylized.max() <= 255
    untiled = np.clip(export_network(images).numpy(), 0, 255)  # Tiled, at full size: what the whole image gives.
    assert np.abs(stylized - untiled).max() < 0.05

    scaling = StylizeModule(export_network, replace(export_module.config, tile_pixels=None, target="cpu"))
    scaled = scaling.stylize_tensor(tf.constant(images))[keys.STYLIZED_IMAGES].numpy()  # Through a 128 px bucket.
    assert scaled.shape == images.shape and np.abs(scaled - untiled).mean() > 1.0


@pytest.mark.slow
def test_large_images_are_tiled_seam_free_at_their_own_size(export_network):
    """Above tile_pixels, 32-pixel tiles; the PNG equals the CLI's untiled stylization to a level."""
    config = ServingConfig(max_side=128, ladder=(64,), target="cpu", tile_pixels=64 * 64, tile_size=32)
    module = StylizeModule(export_network, config)
    images = [_photo(100, 150), _photo(40, 56, "coffee.png")]  # Tiled (15 000 pixels), bucketed (2240).
    outputs = module.serving_default(tf.constant([_png(image) for image in images]))[keys.STYLIZED_IMAGE_BYTES]
    whole = FastStylizer(export_network, tiling=Tiling.never()).stylize(images[0].astype(np.float32))
    tiled = _pixels(outputs.numpy()[0])
    assert tiled.shape == images[0].shape and np.abs(tiled - np.rint(whole)).max() <= 1
    expected = np.rint(_bucket_oracle(export_network, images[1], (64, 64)))
    assert np.abs(_pixels(outputs.numpy()[1]) - expected).max() <= 1


def test_controls_match_the_fast_stylizer(export_module, export_network):
    images = [_photo(64, 64), _photo(128, 128, "coffee.png"), _photo(64, 128, "fruits.png")]
    strength, preserve = [0.6, 1.0, 0.3], [True, False, True]
    outputs = export_module.stylize_controls(tf.constant([_png(i) for i in images]), tf.constant(strength),
                                             tf.constant(preserve))[keys.STYLIZED_IMAGE_BYTES].numpy()
    stylizer = FastStylizer(export_network)
    for image, output, s, p in zip(images, outputs, strength, preserve):
        expected = stylizer.stylize(image.astype(np.float32), strength=s, preserve_color=p)
        assert np.abs(_pixels(output) - np.rint(expected)).max() <= 1


def test_preserve_color_keeps_the_content_chrominance(export_module):
    image = _photo(85, 128)
    output = export_module.stylize_controls(tf.constant([_png(image)]), tf.constant([1.0]),
                                            tf.constant([True]))[keys.STYLIZED_IMAGE_BYTES].numpy()[0]
    chroma = color.rgb_to_yiq(_pixels(output).astype(np.float32))[..., 1:].numpy()
    content_chroma = color.rgb_to_yiq(image.astype(np.float32))[..., 1:].numpy()
    assert np.abs(chroma - content_chroma).mean() < 2.0


@pytest.mark.parametrize("name", ["chelsea.png", "edge_rgba.png", "edge_animated.gif", "edge_progressive.jpg"])
def test_zero_strength_returns_the_decoded_content(export_module, name):
    data = (DATA_DIR / name).read_bytes()
    output = export_module.stylize_controls(tf.constant([data]), tf.constant([0.0]),
                                            tf.constant([False]))[keys.STYLIZED_IMAGE_BYTES].numpy()[0]
    expected = np.rint(decode(tf.constant(data), image_io.DEFAULT_MAX_PIXELS).numpy())
    np.testing.assert_array_equal(_pixels(output), expected)


@pytest.mark.parametrize("data,message", [
    (b"", "image"),
    ((DATA_DIR / "edge_random_bytes.jpg").read_bytes(), "image"),
    ((DATA_DIR / "edge_truncated.jpg").read_bytes(), "JPEG"),
    ((DATA_DIR / "edge_bomb_30000.png").read_bytes(), "claims more than"),
    (_jpeg_claiming(30000, 30000), "claims more than"),
    (_gif_header(65535, 65535), "claims more than"),
])
def test_bad_bytes_are_invalid_argument(export_module, data, message):
    good = (DATA_DIR / "edge_1x1.png").read_bytes()
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        export_module.serving_noxla(tf.constant([good, data]))


def test_bad_controls_are_invalid_argument(export_module):
    image = tf.constant([(DATA_DIR / "edge_1x1.png").read_bytes()])
    with pytest.raises(tf.errors.InvalidArgumentError, match=keys.STRENGTH):
        export_module.stylize_controls(image, tf.constant([1.5]), tf.constant([False]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one value per image"):
        export_module.stylize_controls(image, tf.constant([0.5, 0.5]), tf.constant([False]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=keys.IMAGES):
        export_module.stylize_tensor(tf.zeros([1, 0, 4, 3]))


def test_an_empty_batch_gives_an_empty_answer(export_module):
    assert export_module.serving_default(tf.constant([], tf.string))[keys.STYLIZED_IMAGE_BYTES].shape == (0,)


def test_size_buckets_are_exposed(export_module, export_config):
    assert export_module.size_buckets().numpy().tolist() == list(export_config.bucket_sides) == [64, 128]
