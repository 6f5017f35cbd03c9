"""The exported `tf.Module`: TensorFlow Serving signatures around one trained `TransformerNet`.

Signatures (names, tensor keys, dtypes and shapes are `impasto.export.keys.SIGNATURES`;
each method's input signature is built from that table by `input_signature`):

- ``serving_default``: ``image_bytes`` tf.string [N] (JPEG, PNG, GIF first frame or
  BMP, each of any size) -> ``stylized_image_bytes`` tf.string [N], PNG, each at its
  own input's size. The network is XLA-compiled in a GPU-target export only.
- ``serving_noxla``: the same, never XLA-compiled.
- ``stylize_tensor``: ``images`` float32 [N, H, W, 3] in [0, 255] -> ``stylized_images``
  float32 [N, H, W, 3] in [0, 255].
- ``stylize_controls``: ``serving_default`` plus ``strength`` float32 [N] (0..1, blend
  toward the content) and ``preserve_color`` bool [N].

Per image, the byte signatures run (inside `tf.map_fn`, one image at a time, so the
images of one batch may all differ in size):

    header check (claimed pixels <= max_pixels) -> decode -> mirror-pad up to its size
    bucket -> network (told the image's real size, so the padding changes nothing) ->
    crop -> [luminance transfer, blend] -> PNG

Images larger than the largest bucket (a side over max_side) or with more than
tile_pixels pixels run tile by tile instead, at their own size, with instance-norm
statistics shared by all tiles (`impasto.model.feedforward.tiled_network`): no seams, and the same
result as the whole image would give. With tiling off (tile_pixels None) they are
scaled down to max_side for the network and the result scaled back up.

The export target decides where XLA runs (`ServingConfig.target`):

- ``cpu`` (the default): nothing is XLA-compiled. Every signature runs TensorFlow's
  own kernels (oneDNN on x86), which need no compile, were faster than XLA on the
  CPUs measured, and work on a stock tensorflow_model_server without XLA flags.
- ``gpu``: the bucketed network of ``serving_default``, ``stylize_tensor`` and
  ``stylize_controls`` runs inside an XLA-compiled function (``jit_compile=True``);
  ``serving_noxla`` keeps the plain network. The compiled function only ever sees
  bucket-sized inputs, so XLA compiles at most one program per bucket pair (per batch
  size, for ``stylize_tensor``). Decoding, resizing, tiling and encoding stay outside
  the compiled region.

The tiled path is a function of its own that is never inlined (``_noinline``): the
server builds and optimizes it on the first large image, not while the version
loads (inlined, its copies of the network doubled the graph the first call of
every signature optimizes: about 2x the first-call time).

Decoding matches `impasto.model.image_io` where TensorFlow allows: PNG transparency is
flattened onto white, animated GIFs give their first frame. Unlike image_io, EXIF
orientation is not applied and WebP is not accepted. Bad bytes fail with
InvalidArgumentError (gRPC INVALID_ARGUMENT / REST 400 in TensorFlow Serving).
"""

import itertools
from dataclasses import dataclass

import tensorflow as tf

from impasto.export import keys
from impasto.export.options import CPU_TARGET, GPU_TARGET, TARGETS
from impasto.model import color
from impasto.model.errors import InvalidInputError
from impasto.model.feedforward.padding import mirror_pad
from impasto.model.feedforward.tiled_network import tiled_function
from impasto.model.feedforward.transformer import MIN_SIDE, TransformerNet
from impasto.model.image_io import DEFAULT_MAX_PIXELS
from impasto.model.tiling import DEFAULT_TILE_PIXELS, DEFAULT_TILE_SIZE, Tiling

DEFAULT_LADDER = (256, 384, 512, 768, 1024, 1536, 2048)
"""Bucket sides, in pixels, before `ServingConfig.max_side` caps them."""

_HEADER_LENGTH = 32
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_GIF_MAGIC = b"GIF8"
_BMP_MAGIC = b"BM"


@dataclass(frozen=True)
class ServingConfig:
    """How the exported signatures treat their inputs.

    Attributes:
        max_side: the largest bucket side. Inputs with a longer side are tiled (or,
            with tiling off, scaled down to it and the result scaled back up).
        max_pixels: refuse encoded images whose header claims more pixels than this.
        target: ``cpu`` (no XLA) or ``gpu`` (XLA-compile the network in every signature but
            ``serving_noxla``); see the module doc.
        ladder: candidate bucket sides (multiples of 4, at least 16, increasing).
        tile_pixels: tile inputs with more pixels than this; None: never tile.
        tile_size: core side of a tile (a multiple of 4, at least 16).
    """

    max_side: int = 2048
    max_pixels: int = DEFAULT_MAX_PIXELS
    target: str = CPU_TARGET
    ladder: tuple[int, ...] = DEFAULT_LADDER
    tile_pixels: int | None = DEFAULT_TILE_PIXELS
    tile_size: int = DEFAULT_TILE_SIZE

    def __post_init__(self):
        Tiling(self.tile_pixels, self.tile_size)  # Validates both.
        if self.target not in TARGETS:
            raise InvalidInputError(f"export target must be one of {', '.join(TARGETS)}, not {self.target!r}")
        if not MIN_SIDE <= self.max_side <= 16384:
            raise InvalidInputError(f"max side must be between {MIN_SIDE} and 16384 pixels, not {self.max_side}")
        if self.max_pixels < 1:
            raise InvalidInputError(f"max pixels must be positive, not {self.max_pixels}")
        ladder = list(self.ladder)
        if ladder != sorted(set(ladder)) or any(side % 4 or side < MIN_SIDE for side in ladder):
            raise InvalidInputError(f"bucket ladder must increase and hold multiples of 4 >= {MIN_SIDE}: {ladder}")

    @property
    def jit_compile(self) -> bool:
        """Whether the network is XLA-compiled (in every signature but ``serving_noxla``)."""
        return self.target == GPU_TARGET

    @property
    def bucket_sides(self) -> tuple[int, ...]:
        """Sides an image is padded up to: the ladder below max_side, then max_side rounded up to a multiple of 4."""
        top = max(MIN_SIDE, -(-self.max_side // 4) * 4)
        return tuple(side for side in self.ladder if side < top) + (top,)

    @property
    def buckets(self) -> tuple[tuple[int, int], ...]:
        """Every (height, width) bucket: one XLA program each (per batch size)."""
        return tuple(itertools.product(self.bucket_sides, self.bucket_sides))

    def bucket_of(self, height: int, width: int) -> tuple[int, int] | None:
        """The (height, width) bucket an image of that size runs the network in; None when it is tiled."""
        longest = max(height, width)
        if self.tile_pixels is not None and (longest > self.max_side or height * width > self.tile_pixels):
            return None
        scale = min(1.0, self.max_side / longest)  # As `StylizeModule._stylize_bucketed` fits it (--no-tile).
        fitted = (max(1, round(height * scale)), max(1, round(width * scale)))
        return tuple(min(side for side in self.bucket_sides if side >= length) for length in fitted)


def claimed_pixels(data: tf.Tensor) -> tf.Tensor:
    """Pixel count an encoded image's header claims, read without decoding any pixel.

    JPEG via `tf.io.extract_jpeg_shape`; PNG from IHDR (big-endian uint32 at bytes
    16 and 20); GIF from the logical screen (little-endian uint16 at 6 and 8); BMP
    from BITMAPINFOHEADER (little-endian int32 at 18 and 22). Other formats give 0:
    the decoder refuses them anyway.

    Args:
        data: tf.string scalar, the encoded file.

    Returns:
        int64 scalar.
    """
    header = tf.strings.substr(tf.strings.join([data, tf.constant(b"\0" * _HEADER_LENGTH)]), 0, _HEADER_LENGTH)

    def field(offset: int, dtype: tf.DType, little_endian: bool) -> tf.Tensor:
        raw = tf.io.decode_raw(tf.strings.substr(header, offset, dtype.size), dtype, little_endian=little_endian)
        return tf.cast(raw[0], tf.int64)

    def uint32_big_endian(offset: int) -> tf.Tensor:  # DecodeRaw has no uint32.
        return tf.bitwise.bitwise_and(field(offset, tf.int32, False), tf.constant(0xFFFFFFFF, tf.int64))

    png = uint32_big_endian(16) * uint32_big_endian(20)
    gif = field(6, tf.uint16, True) * field(8, tf.uint16, True)
    bmp = tf.abs(field(18, tf.int32, True) * field(22, tf.int32, True))
    pixels = tf.constant(0, tf.int64)
    for magic, claimed in ((_PNG_MAGIC, png), (_GIF_MAGIC, gif), (_BMP_MAGIC, bmp)):
        pixels = tf.where(_starts_with(header, magic), claimed, pixels)
    return tf.cond(_starts_with(header, _JPEG_MAGIC),
                   lambda: tf.reduce_prod(tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64)),
                   lambda: pixels)


def _starts_with(data: tf.Tensor, magic: bytes) -> tf.Tensor:
    return tf.equal(tf.strings.substr(data, 0, len(magic)), magic)


def decode(data: tf.Tensor, max_pixels: int) -> tf.Tensor:
    """Decodes one encoded image after checking its header's size claim.

    Args:
        data: tf.string scalar.
        max_pixels: refuse larger images before decoding them.

    Returns:
        float32 [H, W, 3], RGB in [0, 255]; PNG alpha flattened onto white, JPEG decoded
        with the accurate integer DCT (as Pillow does), GIF as its first frame.

    Raises:
        tf.errors.InvalidArgumentError: too large, or not a decodable image.
    """
    check = tf.debugging.assert_less_equal(
        claimed_pixels(data), tf.constant(max_pixels, tf.int64),
        message=f"{keys.IMAGE_BYTES}: the image header claims more than {max_pixels} pixels")
    with tf.control_dependencies([check]):
        data = tf.identity(data)

    def png() -> tf.Tensor:
        rgba = tf.cast(tf.io.decode_png(data, channels=4), tf.float32)
        alpha = rgba[:, :, 3:] / 255.0
        return rgba[:, :, :3] * alpha + 255.0 * (1.0 - alpha)

    def jpeg() -> tf.Tensor:
        return tf.cast(tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"), tf.float32)

    def other() -> tf.Tensor:
        return tf.cast(tf.io.decode_image(data, channels=3, expand_animations=False), tf.float32)

    image = tf.case([(_starts_with(data, _PNG_MAGIC), png), (_starts_with(data, _JPEG_MAGIC), jpeg)], default=other)
    image.set_shape([None, None, 3])
    return image


def encode_png(image: tf.Tensor) -> tf.Tensor:
    """float32 [H, W, 3] in [0, 255] -> tf.string scalar PNG (rounded half to even, clipped)."""
    return tf.io.encode_png(tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8))


def input_signature(name: str) -> list[tf.TensorSpec]:
    """The `tf.function` input signature of the named signature, as `keys.SIGNATURES` declares it."""
    return [tf.TensorSpec(info.static_shape, tf.as_dtype(info.dtype), name=info.key)
            for info in keys.SIGNATURES[name].inputs]


class _NetworkFunctions:
    """The network as the signatures call it: plain, XLA-compiled and tiled `tf.function`s.

    A plain object, not tracked by `tf.Module`, so the SavedModel holds these only
    where the signatures call them, not a second time as restorable attributes: every
    function in the file is rebuilt as a Python graph when `tf.saved_model.load` reads
    it, which costs the server memory for each copy (docs/benchmarks.md, "Export").
    """

    def __init__(self, network: TransformerNet, config: "ServingConfig"):
        spec = [tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([2], tf.int32)]
        self.plain = tf.function(network.__call__, input_signature=spec)
        self.xla = tf.function(lambda images, valid_size: network(images, valid_size, static_shapes=True),
                               input_signature=spec, jit_compile=True) if config.jit_compile else self.plain
        self.tiled = tiled_function(network, config.tile_size, inline=False)


class StylizeModule(tf.Module):
    """The exported module: four serving signatures around one network.

    Args:
        network: the trained transformer (its variables are saved with the module).
        config: input handling and XLA settings.
    """

    def __init__(self, network: TransformerNet, config: ServingConfig = ServingConfig()):
        super().__init__(name="impasto_stylize")
        self.network = network
        self.config = config
        self._bucket_sides = tf.constant(config.bucket_sides, tf.int32)
        self._networks = _NetworkFunctions(network, config)

    def saved_root(self) -> tf.Module:
        """What `tf.saved_model.save` should save with `signatures()`: the network's variables and
        ``size_buckets``. Saving the module itself would also store every signature method a second
        time, traced anew with its own copy of the network, which the server pays for in memory."""
        root = tf.Module(name="impasto_stylize")
        root.network = self.network
        root.size_buckets = self.size_buckets
        return root

    def signatures(self) -> dict:
        """Signature name -> concrete function, for `tf.saved_model.save(..., signatures=...)`."""
        return {name: getattr(self, name).get_concrete_function() for name in keys.SIGNATURES}

    @tf.function(input_signature=input_signature(keys.SERVING_DEFAULT))
    def serving_default(self, image_bytes: tf.Tensor) -> dict:
        """tf.string [N] encoded images -> {STYLIZED_IMAGE_BYTES: tf.string [N] PNG}."""
        return {keys.STYLIZED_IMAGE_BYTES: self._stylize_encoded(image_bytes, self._networks.xla)}

    @tf.function(input_signature=input_signature(keys.SERVING_NOXLA))
    def serving_noxla(self, image_bytes: tf.Tensor) -> dict:
        """`serving_default` with the network run without XLA."""
        return {keys.STYLIZED_IMAGE_BYTES: self._stylize_encoded(image_bytes, self._networks.plain)}

    @tf.function(input_signature=input_signature(keys.STYLIZE_TENSOR))
    def stylize_tensor(self, images: tf.Tensor) -> dict:
        """float32 [N, H, W, 3] in [0, 255] -> {STYLIZED_IMAGES: float32 [N, H, W, 3] in [0, 255]}."""
        shape = tf.shape(images)
        check = tf.debugging.assert_positive(shape[1:3], message=f"{keys.IMAGES}: height and width must be at least 1")
        with tf.control_dependencies([check]):
            images = tf.identity(images)
        return {keys.STYLIZED_IMAGES: self._stylize_pixels(images, self._networks.xla)}

    @tf.function(input_signature=input_signature(keys.STYLIZE_CONTROLS))
    def stylize_controls(self, image_bytes: tf.Tensor, strength: tf.Tensor, preserve_color: tf.Tensor) -> dict:
        """`serving_default` with a per-image style strength (0..1) and colour preservation."""
        checks = [
            tf.debugging.assert_equal(tf.size(strength), tf.size(image_bytes),
                                      message=f"{keys.STRENGTH}: needs one value per image"),
            tf.debugging.assert_equal(tf.size(preserve_color), tf.size(image_bytes),
                                      message=f"{keys.PRESERVE_COLOR}: needs one value per image"),
            tf.debugging.assert_greater_equal(strength, 0.0, message=f"{keys.STRENGTH}: must be between 0 and 1"),
            tf.debugging.assert_less_equal(strength, 1.0, message=f"{keys.STRENGTH}: must be between 0 and 1"),
        ]
        with tf.control_dependencies(checks):
            image_bytes = tf.identity(image_bytes)
        return {keys.STYLIZED_IMAGE_BYTES: self._stylize_encoded(image_bytes, self._networks.xla,
                                                                  controls=(strength, preserve_color))}

    @tf.function(input_signature=[])
    def size_buckets(self) -> tf.Tensor:
        """int32 [K]: the bucket sides; every (height, width) pair of them is a bucket."""
        return self._bucket_sides

    def _stylize_encoded(self, image_bytes: tf.Tensor, forward, controls=None) -> tf.Tensor:
        """tf.string [N] -> tf.string [N] PNG, one image at a time (sizes may differ)."""

        def one(elements) -> tf.Tensor:
            content = decode(elements[0], self.config.max_pixels)[None]
            stylized = self._stylize_pixels(content, forward)
            if controls is not None:
                stylized = tf.cond(elements[2], lambda: color.transfer_luminance(stylized, content), lambda: stylized)
                stylized = color.blend(stylized, content, elements[1])
            return encode_png(stylized[0])

        elements = (image_bytes,) if controls is None else (image_bytes, *controls)
        return tf.map_fn(one, elements, fn_output_signature=tf.TensorSpec([], tf.string), parallel_iterations=1)

    def _stylize_pixels(self, images: tf.Tensor, forward) -> tf.Tensor:
        """float32 [N, H, W, 3] -> float32 [N, H, W, 3]: bucketed, or tiled if large (see the module doc)."""
        if self.config.tile_pixels is None:
            return self._stylize_bucketed(images, forward)
        shape = tf.shape(images)
        large = tf.logical_or(tf.maximum(shape[1], shape[2]) > self.config.max_side,
                              shape[1] * shape[2] > self.config.tile_pixels)
        return tf.cond(large, lambda: self._stylize_tiled(images), lambda: self._stylize_bucketed(images, forward))

    def _stylize_tiled(self, images: tf.Tensor) -> tf.Tensor:
        """float32 [N, H, W, 3] -> the same, each image tile by tile at its own size (not XLA-compiled)."""
        def one(image: tf.Tensor) -> tf.Tensor:
            return self._networks.tiled(image[None])[0]

        stylized = tf.map_fn(one, images, parallel_iterations=1)
        return tf.clip_by_value(stylized, 0.0, 255.0)

    def _stylize_bucketed(self, images: tf.Tensor, forward) -> tf.Tensor:
        """float32 [N, H, W, 3] -> float32 [N, H, W, 3]: fit to max_side, pad to a bucket, run, crop, restore."""
        shape = tf.shape(images)
        height, width = shape[1], shape[2]
        scale = tf.minimum(1.0, self.config.max_side / tf.cast(tf.maximum(height, width), tf.float32))
        fit_height = tf.maximum(1, tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32))
        fit_width = tf.maximum(1, tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32))
        scaled = scale < 1.0
        fitted = tf.cond(scaled, lambda: tf.image.resize(images, [fit_height, fit_width], antialias=True),
                         lambda: images)
        padded = mirror_pad(fitted, self._bucket_for(fit_height), self._bucket_for(fit_width))
        # Instance norms take their statistics from the image, not the padding (`TransformerNet`'s valid_size).
        stylized = forward(padded, tf.stack([fit_height, fit_width]))[:, :fit_height, :fit_width, :]
        restored = tf.cond(scaled, lambda: tf.image.resize(stylized, [height, width]), lambda: stylized)
        return tf.clip_by_value(restored, 0.0, 255.0)

    def _bucket_for(self, side: tf.Tensor) -> tf.Tensor:
        """The smallest bucket side >= `side` (int32 scalar; side <= max_side)."""
        index = tf.searchsorted(self._bucket_sides, tf.reshape(side, [1]), side="left")[0]
        return tf.gather(self._bucket_sides, tf.minimum(index, tf.size(self._bucket_sides) - 1))
